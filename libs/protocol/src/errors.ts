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
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

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
