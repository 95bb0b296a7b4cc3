import { getAddress, hashMessage, recoverAddress, type Signer } from 'ethers';
import { canonicalJson } from './canonical.js';
import { CommuneError, ErrorCode } from './errors.js';

/**
 * Every kind of signed request Commune takes. The kind is part of the signed text, so a
 * signature made for one kind is never valid as another (a transfer is not a withdrawal, a
 * deploy is not a job action), whatever fields the two bodies share.
 */
export const SignedKind = {
  deploy: 'deploy',
  jobAction: 'job-action',
  ownerRequest: 'owner-request',
  stateOperation: 'state-operation',
  computeGroup: 'compute-group',
  appliance: 'appliance',
  marketQuote: 'market-quote',
  transfer: 'transfer',
  withdrawal: 'withdrawal',
  readGrant: 'read-grant',
  workerHello: 'worker-hello',
} as const;
export type SignedKind = (typeof SignedKind)[keyof typeof SignedKind];

/** Bumped if the signed text's layout ever changes; old signatures then stop verifying. */
const SIGNED_TEXT_VERSION = 1;

/**
 * The exact text a signature covers (EIP-191 personal message): a fixed header naming Commune,
 * the version and the request's kind, then the canonical JSON of the payload.
 */
export function signedText(kind: SignedKind, payload: unknown): string {
  return `Commune signed request v${SIGNED_TEXT_VERSION}\nkind: ${kind}\n${canonicalJson(payload)}`;
}

/** Anything that can sign an EIP-191 message: an ethers Wallet, a keystore-unlocked wallet, a browser signer. */
export type MessageSigner = Pick<Signer, 'signMessage'>;

/** Signs `payload` as a request of `kind`. The one way every Commune client signs. */
export function signRequest(signer: MessageSigner, kind: SignedKind, payload: unknown): Promise<string> {
  return signer.signMessage(signedText(kind, payload));
}

/** The checksummed address that signed `payload` as a request of `kind`, or null for a malformed signature. */
export function recoverRequestSigner(kind: SignedKind, payload: unknown, signature: string): string | null {
  try {
    return getAddress(recoverAddress(hashMessage(signedText(kind, payload)), signature));
  } catch {
    return null;
  }
}

/**
 * Remembers used nonces: `claim` is true the first time a (signer, kind, nonce) is seen within
 * `ttlMs`, false after. Each service backs it with its own store (Redis, Postgres).
 */
export interface NonceStore {
  claim(signer: string, kind: SignedKind, nonce: string, ttlMs: number): Promise<boolean>;
}

export interface SignedRequestCheck {
  kind: SignedKind;
  /** What was signed, exactly as the client sent it (before any transform). */
  payload: unknown;
  signature: string;
  /** The address the request claims signed it. */
  signer: string;
  /** Epoch ms after which the request is refused. */
  expiresAt: number;
  /** Single-use nonce; omitted where the caller makes the request single-use another way (an idempotency key). */
  nonce?: string;
}

export interface SignedRequestPolicy {
  now: number;
  /** How far ahead of `now` an expiry may lie. */
  maxLifetimeMs: number;
  /** Where nonces are claimed; required when the check carries a nonce. */
  nonces?: NonceStore;
}

/**
 * The one verification of a signed request, used by every service: expiry within the lifetime
 * (EEXPIRED), signature made by the claimed signer over this kind (EBADSIGNATURE), nonce unused
 * (EREPLAY). Returns the checksummed signer. Whether that signer may do what it asks (the job's
 * owner, an account's holder) is the caller's question and answers EPERM.
 */
export async function verifySignedRequest(check: SignedRequestCheck, policy: SignedRequestPolicy): Promise<string> {
  if (!Number.isFinite(check.expiresAt) || check.expiresAt <= policy.now) {
    throw new CommuneError(ErrorCode.EEXPIRED, `the signed ${check.kind} request has expired`);
  }
  if (check.expiresAt - policy.now > policy.maxLifetimeMs) {
    throw new CommuneError(ErrorCode.EEXPIRED, `the signed ${check.kind} request's expiry lies more than ${policy.maxLifetimeMs} ms ahead`);
  }
  let claimed: string;
  try {
    claimed = getAddress(check.signer);
  } catch {
    throw new CommuneError(ErrorCode.EINVAL, `not an address: ${String(check.signer).slice(0, 60)}`);
  }
  const signer = typeof check.signature === 'string' ? recoverRequestSigner(check.kind, check.payload, check.signature) : null;
  if (signer !== claimed) throw new CommuneError(ErrorCode.EBADSIGNATURE, `the ${check.kind} request was not signed by ${claimed}`);
  if (check.nonce !== undefined) {
    if (!policy.nonces) throw new Error('verifySignedRequest: a nonce needs a NonceStore');
    // Remembered for twice the longest lifetime: past that the expiry check refuses the request anyway.
    if (!(await policy.nonces.claim(claimed, check.kind, check.nonce, policy.maxLifetimeMs * 2))) {
      throw new CommuneError(ErrorCode.EREPLAY, `this ${check.kind} nonce was already used`);
    }
  }
  return claimed;
}
