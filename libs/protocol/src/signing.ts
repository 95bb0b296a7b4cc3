import { createRequire } from 'node:module';
import { getAddress, getBytes, hashMessage, keccak256, recoverAddress, type Signer } from 'ethers';
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
    const digest = hashMessage(signedText(kind, payload));
    // The usual form (0x + r, s, v; v 27/28 or 0/1; s below 2^255 as ethers demands) goes to
    // libsecp256k1 when its binding loads (~13k recoveries/s against ethers' ~570/s on one core);
    // any other form, or no binding, is ethers' recoverAddress. Both give the same signer
    // (cross-checked in apps/bank/test/signature-recovery.spec.ts).
    const native = nativeSecp256k1();
    if (native && typeof signature === 'string' && /^0x[0-9a-fA-F]{130}$/.test(signature)) {
      const bytes = Buffer.from(signature.slice(2), 'hex');
      const v = bytes[64]!;
      const recovery = v === 27 || v === 28 ? v - 27 : v === 0 || v === 1 ? v : -1;
      if (recovery >= 0 && bytes[32]! < 0x80) {
        const publicKey = native.ecdsaRecover(bytes.subarray(0, 64), recovery, getBytes(digest), false);
        return getAddress('0x' + keccak256(publicKey.subarray(1)).slice(-40));
      }
    }
    return getAddress(recoverAddress(digest, signature));
  } catch {
    return null;
  }
}

interface Secp256k1Binding {
  ecdsaRecover(signature: Uint8Array, recovery: number, digest: Uint8Array, compressed: boolean): Uint8Array;
}
let secp256k1Binding: Secp256k1Binding | null | undefined;
/** The `secp256k1` package's native binding (prebuilt N-API), or null where it does not load. */
function nativeSecp256k1(): Secp256k1Binding | null {
  if (secp256k1Binding === undefined) {
    try {
      secp256k1Binding = createRequire(import.meta.url)('secp256k1/bindings') as Secp256k1Binding;
    } catch {
      secp256k1Binding = null;
    }
  }
  return secp256k1Binding;
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
