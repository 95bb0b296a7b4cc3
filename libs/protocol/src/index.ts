export * from './errors.js';
export * from './limits.js';
export * from './canonical.js';
export * from './schemas.js';
export * from './events.js';
export * from './ids.js';
export * from './bank.js';
