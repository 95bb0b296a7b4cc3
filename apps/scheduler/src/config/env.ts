import { z } from 'zod';
import { Limits } from '@commune/protocol';

/** The scheduler's environment, checked at boot (every variable is listed in .env.example). */
export const SchedulerEnvSchema = z.object({
  DATABASE_URL: z.string().url().default('postgresql://postgres@127.0.0.1:5432/commune'),
  /** Postgres schema the scheduler owns (DESIGN.md: no service reads another's tables). */
  DATABASE_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]*$/).default('scheduler'),
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  /** Prefix of every Redis key and BullMQ queue, so test suites and deployments can share a Redis. */
  REDIS_PREFIX: z.string().regex(/^[a-zA-Z0-9_:-]+$/).default('commune'),
  /** Interface to listen on: loopback unless told otherwise (the images set 0.0.0.0). */
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  MAX_WORK_BYTES: z.coerce.number().int().positive().default(Limits.maxWorkBytes),
  MAX_INPUT_SET_BYTES: z.coerce.number().int().positive().default(Limits.maxInputSetBytes),
  MAX_SLICES_PER_JOB: z.coerce.number().int().positive().default(Limits.maxSlicesPerJob),
  MAX_SLICES_PER_TASK: z.coerce.number().int().positive().max(Limits.maxSlicesPerTask).default(Limits.maxSlicesPerTask),
  PROGRESS_TIMEOUT_MS: z.coerce.number().int().positive().default(Limits.progressTimeoutMs),
  SLICE_TIME_LIMIT_MS: z.coerce.number().int().positive().default(Limits.sliceTimeLimitMs),
  LEASE_TIMEOUT_MS: z.coerce.number().int().positive().default(Limits.leaseTimeoutMs),
  LEASE_SWEEP_INTERVAL_MS: z.coerce.number().int().positive().default(1000),
  MAX_SLICE_ERRORS_PER_JOB: z.coerce.number().int().positive().default(Limits.maxSliceErrorsPerJob),
  MAX_ATTEMPTS_PER_SLICE: z.coerce.number().int().positive().default(Limits.maxAttemptsPerSlice),
  MAX_MESSAGE_BYTES: z.coerce.number().int().positive().default(Limits.maxMessageBytes),
  // --- money (apps/bank). Without BANK_URL only free jobs run (paid offers get ENOBANK).
  BANK_URL: z.string().url().optional(),
  /** The secret the bank's service endpoints (holds, payments) require; no default: required with BANK_URL. */
  BANK_SERVICE_TOKEN: z.string().min(16).optional(),
  /** Market rate, DCC per second of slice time; a slice is paid its measured time at this rate, never above its job's offer. */
  MARKET_RATE_DCC_PER_SECOND: z.string().regex(/^\d+(\.\d+)?$/).default('0.0001465376'),
  /** The least a paid slice is priced at, DCC. */
  MINIMUM_SLICE_PAYMENT_DCC: z.string().regex(/^\d+(\.\d+)?$/).default('0.000001'),
  /** Slices escrowed at a time: a job's hold covers this many slices at its offer and is re-escrowed as they are paid. */
  ESCROW_SLICES: z.coerce.number().int().positive().default(10_000),
  /** Operator fee per paid slice, DCC, paid out of the job's hold to the bank's fee account. */
  OPERATOR_FEE_DCC: z.string().regex(/^\d+(\.\d+)?$/).default('0'),
  /** Payments posted to the bank per settlement batch. */
  SETTLEMENT_BATCH_SIZE: z.coerce.number().int().positive().max(10_000).default(2000),
  SETTLEMENT_INTERVAL_MS: z.coerce.number().int().positive().default(500),
  /** Status events per job per replica are sent at most this often (the final one always). */
  STATUS_EVENT_INTERVAL_MS: z.coerce.number().int().nonnegative().default(250),
  /**
   * A job's event log (what a reconnecting client replays from its cursor, see jobs/job-event-log.ts):
   * at most this many events and this many bytes of them per job (oldest dropped first; a replay
   * past them reports a gap), kept this long after the job ends.
   */
  JOB_EVENT_LOG_LENGTH: z.coerce.number().int().positive().max(10_000_000).default(10_000),
  JOB_EVENT_LOG_BYTES: z.coerce.number().int().positive().default(8 * 1024 * 1024),
  JOB_EVENT_LOG_GRACE_SECONDS: z.coerce.number().int().positive().default(3600),
  /** Private key (0x + 64 hex) that signs WorkValueQuotes; a fresh one per process when unset. */
  SCHEDULER_QUOTE_KEY: z.preprocess((value) => (value === '' ? undefined : value), z.string().regex(/^0x[0-9a-fA-F]{64}$/).optional()),
  /** How long a WorkValueQuote stays firm. */
  QUOTE_LIFETIME_MS: z.coerce.number().int().positive().default(Limits.quoteLifetimeMs),
  // --- shutdown (SIGTERM or SIGINT): see health/replica-lifecycle.ts
  /** The longest a replica drains before it closes: not ready, then its workers and clients disconnected, paced, then answers in flight. */
  SHUTDOWN_DRAIN_MS: z.coerce.number().int().min(0).max(600_000).default(10_000),
  /** The first part of the drain: /health answers 503 `draining` (load balancers stop sending connections) while the replica still serves. */
  SHUTDOWN_NOT_READY_MS: z.coerce.number().int().min(0).max(600_000).default(2_000),
}).refine((env) => env.BANK_URL === undefined || env.BANK_SERVICE_TOKEN !== undefined, {
  path: ['BANK_SERVICE_TOKEN'],
  message: 'BANK_URL is set, so BANK_SERVICE_TOKEN (the secret the bank was started with) must be set too',
}).refine((env) => env.SHUTDOWN_NOT_READY_MS <= env.SHUTDOWN_DRAIN_MS, {
  path: ['SHUTDOWN_NOT_READY_MS'],
  message: 'is part of SHUTDOWN_DRAIN_MS, so it cannot be longer',
});
export type SchedulerEnv = z.infer<typeof SchedulerEnvSchema>;

export const SCHEDULER_ENV = Symbol('SCHEDULER_ENV');

export function loadSchedulerEnv(source: NodeJS.ProcessEnv = process.env): SchedulerEnv {
  const parsed = SchedulerEnvSchema.safeParse(source);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new Error(`invalid scheduler environment: ${problems}`);
  }
  return parsed.data;
}
