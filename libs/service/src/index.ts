export * from './errors.js';
export * from './socket-handlers.js';
export * from './redis-generation.js';
export * from './postgres-pool.js';
export * from './health.js';
