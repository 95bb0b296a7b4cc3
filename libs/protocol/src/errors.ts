/**
 * Every error a Commune component reports carries one of these codes. The first group is the
 * DCP Compute API's own (spec: "Job Handles / Methods / exec", "Result Handles", "Appliances");
 * the second group is Commune's, for conditions the spec does not name.
 */
export const ErrorCode = {
  // DCP Compute API
  ENOPROGRESS: 'ENOPROGRESS',
  ETOOMANYTASKS: 'ETOOMANYTASKS',
  EWORKTOOBIG: 'EWORKTOOBIG',
  ETOOBIG: 'ETOOBIG',
  ESLICETOOSLOW: 'ESLICETOOSLOW',
  ETOOMANYERRORS: 'ETOOMANYERRORS',
  EPERM: 'EPERM',
  ENOFUNDS: 'ENOFUNDS',
  ERANGE: 'ERANGE',
  ENAMESPACE: 'ENAMESPACE',
  EEXIST: 'EEXIST',
  // Commune
  /** A message or body failed its schema. */
  EINVAL: 'EINVAL',
  /** A signature does not match the claimed address. */
  EBADSIGNATURE: 'EBADSIGNATURE',
  /** A signed request is past its expiry (or too far in the future). */
  EEXPIRED: 'EEXPIRED',
  /** A signed request's nonce was already used. */
  EREPLAY: 'EREPLAY',
  /** No such job / task / result. */
  ENOTFOUND: 'ENOTFOUND',
  /** A result for a slice that is not leased to the submitting worker (expired, returned or never leased). */
  ENOTLEASED: 'ENOTLEASED',
  /** A second result for a slice that already has one. */
  EDUPLICATE: 'EDUPLICATE',
  /** The work function threw (or rejected) for a slice. */
  EWORKFUNCTION: 'EWORKFUNCTION',
  /** A sandbox ran out of its memory limit while running a slice. */
  ESANDBOXMEMORY: 'ESANDBOXMEMORY',
  /** A slice's result is larger than maxResultBytes. */
  ERESULTTOOBIG: 'ERESULTTOOBIG',
  /** A paid job was offered before the bank exists: only free jobs (offer 0) run. */
  ENOBANK: 'ENOBANK',
  /** The job was cancelled. */
  ECANCELLED: 'ECANCELLED',
  /** The scheduler could not be reached or answered unexpectedly. */
  ESCHEDULER: 'ESCHEDULER',
  /** The job is not in a state that allows the request (e.g. cancel of a finished job). */
  EJOBSTATE: 'EJOBSTATE',
  /** A job's shared state would be larger than Limits.maxStateBytes. */
  ESTATETOOBIG: 'ESTATETOOBIG',
  // Commune's bank
  /** An idempotency key was reused with a different request body. */
  EKEYREUSED: 'EKEYREUSED',
  /** A hold was already released or expired: it resolves at most once. */
  EHOLDCLOSED: 'EHOLDCLOSED',
  /** A service endpoint was called without the service token. */
  EUNAUTHORIZED: 'EUNAUTHORIZED',
  /** The Ethereum bridge could not complete an on-chain operation. */
  ECHAIN: 'ECHAIN',
  /** The bank failed unexpectedly (its logs say why); the request may be retried with the same key. */
  EBANK: 'EBANK',
  // Hostile input
  /** A message, body or value is nested deeper than Limits.maxValueDepth. */
  ETOODEEP: 'ETOODEEP',
  /** A worker asked for more than its lease cap (Limits.maxLeasedSlicesPerSandbox per declared sandbox). */
  ELEASECAP: 'ELEASECAP',
  /** Too many requests from one peer in a short time; retry later. */
  ERATELIMIT: 'ERATELIMIT',
  /** A dependency (database, Redis, another service) is down for now; the request may be retried. */
  EUNAVAILABLE: 'EUNAVAILABLE',
  /**
   * A value cannot travel as KVIN (a function, a symbol, a class instance, a Promise, a WeakMap...),
   * or KVIN text holds a kind Commune does not rebuild (a class by name, a function, a symbol).
   */
  EUNSERIALIZABLE: 'EUNSERIALIZABLE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * The HTTP status of each code, the same in every service: 400 for a request that can never
 * succeed as sent, 401 when it is not (validly) signed, 403 when the signer may not do it, 404,
 * 409 for a conflict with the current state, 402 for money, 413 for size, 429/503 for retry
 * later, 500 only for the service's own failures (whose text never leaves the service).
 */
export const HttpStatusOfCode: Record<ErrorCode, number> = {
  ENOPROGRESS: 422,
  ETOOMANYTASKS: 413,
  EWORKTOOBIG: 413,
  ETOOBIG: 413,
  ESLICETOOSLOW: 422,
  ETOOMANYERRORS: 422,
  EPERM: 403,
  ENOFUNDS: 402,
  ERANGE: 400,
  ENAMESPACE: 403,
  EEXIST: 409,
  EINVAL: 400,
  EBADSIGNATURE: 401,
  EEXPIRED: 401,
  EREPLAY: 409,
  ENOTFOUND: 404,
  ENOTLEASED: 409,
  EDUPLICATE: 409,
  EWORKFUNCTION: 422,
  ESANDBOXMEMORY: 422,
  ERESULTTOOBIG: 413,
  ENOBANK: 409,
  ECANCELLED: 409,
  ESCHEDULER: 500,
  EJOBSTATE: 409,
  ESTATETOOBIG: 413,
  EKEYREUSED: 409,
  EHOLDCLOSED: 409,
  EUNAUTHORIZED: 401,
  ECHAIN: 503,
  EBANK: 500,
  ETOODEEP: 400,
  ELEASECAP: 429,
  ERATELIMIT: 429,
  EUNAVAILABLE: 503,
  EUNSERIALIZABLE: 400,
};

/** The HTTP status for a code; unknown codes are the service's own failure (500). */
export function httpStatusOf(code: string): number {
  return (HttpStatusOfCode as Record<string, number>)[code] ?? 500;
}

/** An Error with a code from {@link ErrorCode}, as thrown by the SDK and reported by the services. */
export class CommuneError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  constructor(code: ErrorCode, message: string, details?: unknown) {
    super(message);
    this.name = 'CommuneError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

export function isCommuneError(error: unknown): error is CommuneError {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === 'string' && code in ErrorCode;
}
