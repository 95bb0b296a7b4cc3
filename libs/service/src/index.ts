export * from './errors.js';
export * from './socket-handlers.js';
