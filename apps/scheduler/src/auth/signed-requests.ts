import { Injectable } from '@nestjs/common';
import { Limits, recoverRequestSigner, verifySignedRequest, type SignedKind } from '@commune/protocol';
import { CommuneError, ErrorCode } from '@commune/protocol';
import { RedisNonceStore } from './nonce-store.js';

export interface SchedulerSignedRequest {
  kind: SignedKind;
  /** What was signed, exactly as the client sent it. */
  payload: unknown;
  signature: string;
  /**
   * The address the request claims signed it. Requests that name no signer (job actions, state
   * operations) are checked against whoever the signature recovers to; the caller then decides
   * whether that address may act (EPERM).
   */
  signer?: string;
  expiresAt: number;
  /** Omitted where the request is single-use another way (a deploy's (owner, nonce) row, an appliance version). */
  nonce?: string;
}

/**
 * The scheduler's one verification of signed requests: protocol verifySignedRequest (expiry:
 * EEXPIRED, signature of the claimed signer over this kind: EBADSIGNATURE, nonce: EREPLAY)
 * with the scheduler's signature lifetime and its Redis nonce store. Every service verifies here.
 */
@Injectable()
export class SignedRequests {
  constructor(private readonly nonces: RedisNonceStore) {}

  /** The checksummed signer. */
  async verify(request: SchedulerSignedRequest, now = Date.now()): Promise<string> {
    let signer = request.signer;
    if (signer === undefined) {
      // A signature that recovers to no address is no signature at all.
      const recovered = typeof request.signature === 'string' ? recoverRequestSigner(request.kind, request.payload, request.signature) : null;
      if (recovered === null) throw new CommuneError(ErrorCode.EBADSIGNATURE, `the ${request.kind} request's signature is malformed`);
      signer = recovered;
    }
    return verifySignedRequest(
      { kind: request.kind, payload: request.payload, signature: request.signature, signer, expiresAt: request.expiresAt, nonce: request.nonce },
      { now, maxLifetimeMs: Limits.maxSignatureLifetimeMs, nonces: this.nonces },
    );
  }
}
