/** @commune/worker: the standalone worker (`commune-worker`); its parts for tests and embedding. */
export { Supervisor, defaultTiming, type SupervisorOptions, type SupervisorStats, type SupervisorTiming, type WorkerPool, type WorkerSocket } from './supervisor.js';
export { createLogger, type Logger, type LoggerOptions, type LogLevel, type LogFields } from './log.js';
export { parseCommandLine, usage, defaultSchedulerUrl, maxSandboxes, WorkerConfigFileSchema, type WorkerOptions, type ParsedCommandLine, type OptionSources } from './options.js';
export { Earnings, describeEarnings, unitsToDcc, type EarningsOptions, type EarningsSnapshot, type EarningsSource } from './earnings.js';
