import { getAddress } from 'ethers';
import { z } from 'zod';
import { AddressSchema, Limits } from '@commune/protocol';

/**
 * The public development token: taken only with BANK_DEV_MODE=1 and no BANK_SERVICE_TOKEN (the
 * bank then logs a warning at every boot); refused as a token outside dev mode.
 */
export const DEV_SERVICE_TOKEN = 'commune-dev-service-token-public-insecure';
/** The shortest service token the bank takes (e.g. `openssl rand -hex 32` gives 64 characters). */
export const MIN_SERVICE_TOKEN_CHARS = 32;
/** Where operator fees go when BANK_FEE_ACCOUNT is not set (a fixed dev address nobody holds a key for). */
export const DEV_FEE_ACCOUNT = getAddress('0x0000000000000000000000000000000000000fee');

const positiveInt = () => z.coerce.number().int().positive();

/** The bank's environment, checked at boot. Every variable is listed in apps/bank/README.md. */
export const BankEnvSchema = z.object({
  DATABASE_URL: z.string().url().default('postgresql://postgres@127.0.0.1:5432/commune'),
  /** Postgres schema the bank owns (DESIGN.md: no service reads another's tables). */
  DATABASE_SCHEMA: z.string().regex(/^[a-z_][a-z0-9_]*$/).default('bank'),
  /** Connections in the pool: the most ledger transactions in flight at once. */
  DATABASE_POOL_SIZE: positiveInt().max(200).default(20),
  /** Any one SQL statement (including a wait for a row lock) is cancelled after this long. */
  DATABASE_STATEMENT_TIMEOUT_MS: positiveInt().default(30_000),
  REDIS_URL: z.string().default('redis://127.0.0.1:6379'),
  /** Prefix of every Redis key and BullMQ queue, so test suites and deployments can share a Redis. */
  REDIS_PREFIX: z.string().regex(/^[a-zA-Z0-9_:-]+$/).default('commune'),
  /** Interface the HTTP server binds: loopback unless told otherwise (the image sets 0.0.0.0). */
  HOST: z.string().default('127.0.0.1'),
  PORT: z.coerce.number().int().min(0).max(65535).default(4100),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Bearer token of the service endpoints (holds, payments), shared with the scheduler: required, at least MIN_SERVICE_TOKEN_CHARS. */
  BANK_SERVICE_TOKEN: z.string().optional(),
  /** 1: a development bank; BANK_SERVICE_TOKEN may be left unset and is then DEV_SERVICE_TOKEN (public). */
  BANK_DEV_MODE: z.enum(['0', '1', 'true', 'false', '']).default('0').transform((value) => value === '1' || value === 'true'),
  /** The account that receives operator fees (feePerPayment of every payment). */
  BANK_FEE_ACCOUNT: AddressSchema.default(DEV_FEE_ACCOUNT),
  /** Lifetime of holds created without an expiry (the bridge's withdrawal reserves). */
  HOLD_DEFAULT_TTL_MS: positiveInt().default(7 * 24 * 3600_000),
  /** The furthest a hold's expiresAt may lie in the future. -> EINVAL */
  MAX_HOLD_LIFETIME_MS: positiveInt().default(90 * 24 * 3600_000),
  /** How often the `expire-holds` job releases holds past their expiry. */
  HOLD_SWEEP_INTERVAL_MS: positiveInt().default(10_000),
  /** Holds released per run of `expire-holds` (the next run takes the rest). */
  MAX_EXPIRED_HOLDS_PER_SWEEP: positiveInt().default(1_000),
  /** The furthest a signed transfer's expiresAt may lie in the future. -> EEXPIRED */
  MAX_TRANSFER_LIFETIME_MS: positiveInt().default(Limits.maxSignatureLifetimeMs),
  /** Signed or in-process transfers committed together in one ledger transaction (group commit), at most. */
  MAX_TRANSFERS_PER_BATCH: positiveInt().max(5_000).default(256),
  /**
   * Transfer batches (transactions) in flight at once; what arrives meanwhile waits for the next batch.
   * One by default: batches twice as big (~16 transfers from 32 HTTP clients against ~9 with two), so
   * about half the bank and PostgreSQL CPU per signed transfer on a 2-core machine (bench/ledger.mjs, 2026-12-03).
   */
  TRANSFER_BATCHES_IN_FLIGHT: positiveInt().max(64).default(1),
  /** Transfers waiting for a batch, at most; beyond it a transfer is refused with EUNAVAILABLE (503, retry later). */
  MAX_PENDING_TRANSFERS: positiveInt().default(10_000),
  /** Attempts of one ledger transaction that hits a serialization failure or a deadlock. */
  MAX_TRANSACTION_ATTEMPTS: positiveInt().max(50).default(10),
  /** Entries per page of GET /accounts/:address/history (the default page is smaller). */
  MAX_HISTORY_PAGE: positiveInt().max(10_000).default(500),
  /** Payments in one POST /holds/:id/payments (the protocol allows at most 10,000). */
  MAX_PAYMENTS_PER_BATCH: positiveInt().max(10_000).default(10_000),
  /** Largest request body, bytes (a batch of 10,000 payments is about 1.5 MB). */
  MAX_BODY_BYTES: positiveInt().default(4 * 1024 * 1024),
  /** Accounts whose id the bank remembers in memory (addresses never change their id). */
  ACCOUNT_CACHE_SIZE: positiveInt().default(100_000),
});
export type BankEnv = Omit<z.infer<typeof BankEnvSchema>, 'BANK_SERVICE_TOKEN'> & { BANK_SERVICE_TOKEN: string };

export const BANK_ENV = Symbol('BANK_ENV');

export function loadBankEnv(source: NodeJS.ProcessEnv = process.env): BankEnv {
  const parsed = BankEnvSchema.safeParse(source);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new Error(`invalid bank environment: ${problems}`);
  }
  const env = parsed.data;
  const token = env.BANK_SERVICE_TOKEN ?? '';
  if (token === '' && env.BANK_DEV_MODE) return { ...env, BANK_SERVICE_TOKEN: DEV_SERVICE_TOKEN };
  if (token === '') {
    throw new Error(
      `BANK_SERVICE_TOKEN is not set: the bank refuses to start without a service token (at least ${MIN_SERVICE_TOKEN_CHARS} characters, ` +
        'e.g. `openssl rand -hex 32`), given to the scheduler as its BANK_SERVICE_TOKEN too. For a development bank nobody else can reach, ' +
        'BANK_DEV_MODE=1 runs it with the public development token instead.',
    );
  }
  if (token.length < MIN_SERVICE_TOKEN_CHARS) {
    throw new Error(`BANK_SERVICE_TOKEN is ${token.length} characters: the bank needs at least ${MIN_SERVICE_TOKEN_CHARS} (e.g. \`openssl rand -hex 32\`)`);
  }
  if (token === DEV_SERVICE_TOKEN && !env.BANK_DEV_MODE) {
    throw new Error('BANK_SERVICE_TOKEN is the public development token: outside BANK_DEV_MODE=1 the bank needs a secret one (e.g. `openssl rand -hex 32`)');
  }
  return { ...env, BANK_SERVICE_TOKEN: token };
}
