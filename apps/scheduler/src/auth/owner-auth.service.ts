import { Injectable } from '@nestjs/common';
import { CommuneError, ErrorCode, Limits } from '@commune/protocol';
import { RedisConnections } from '../redis/redis.module.js';
import { verifyOwnerRequest, type RequestHeaders } from './domain/owner-request.js';

/** The parts of an HTTP request an owner signature covers. */
export interface SignedHttpRequest {
  method: string;
  /** Path and query string as received (Express `originalUrl`). */
  originalUrl: string;
  headers: RequestHeaders;
}

/**
 * Authenticates owner-signed REST requests and makes each single-use: the nonce is remembered in
 * Redis (the same keys as signed job actions) for twice the longest signature lifetime.
 */
@Injectable()
export class OwnerAuth {
  constructor(private readonly redis: RedisConnections) {}

  /** The checksummed address that signed the request. */
  async authenticate(request: SignedHttpRequest): Promise<string> {
    const signed = verifyOwnerRequest(request.method.toUpperCase(), request.originalUrl, request.headers, Date.now(), Limits.maxSignatureLifetimeMs);
    const fresh = await this.redis.command.set(this.redis.key('nonce', signed.owner, signed.nonce), '1', 'PX', Limits.maxSignatureLifetimeMs * 2, 'NX');
    if (fresh === null) throw new CommuneError(ErrorCode.EREPLAY, 'this request nonce was already used');
    return signed.owner;
  }

  /** EPERM unless `signer` owns the job. */
  static requireOwner(signer: string, owner: string, what: string): void {
    if (signer !== owner) throw new CommuneError(ErrorCode.EPERM, `only the job owner may ${what}`);
  }
}
