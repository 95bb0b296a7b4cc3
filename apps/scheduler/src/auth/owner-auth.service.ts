import { Injectable } from '@nestjs/common';
import { CommuneError, ErrorCode, OwnerRequestHeaders } from '@commune/protocol';
import { ownerRequestCheck, type RequestHeaders } from './domain/owner-request.js';
import { SignedRequests } from './signed-requests.js';

/** The parts of an HTTP request an owner signature covers. */
export interface SignedHttpRequest {
  method: string;
  /** Path and query string as received (Express `originalUrl`). */
  originalUrl: string;
  headers: RequestHeaders;
}

/** Authenticates owner-signed REST requests through the one signed-request check (single-use nonce in Redis). */
@Injectable()
export class OwnerAuth {
  constructor(private readonly signed: SignedRequests) {}

  /** The checksummed address that signed the request. */
  async authenticate(request: SignedHttpRequest): Promise<string> {
    return this.signed.verify(ownerRequestCheck(request.method.toUpperCase(), request.originalUrl, request.headers));
  }

  /** True when the request carries an owner signature (it is then checked by authenticate). */
  static isSigned(request: SignedHttpRequest): boolean {
    return request.headers[OwnerRequestHeaders.signature] !== undefined;
  }

  /** EPERM unless `signer` owns the job. */
  static requireOwner(signer: string, owner: string, what: string): void {
    if (signer !== owner) throw new CommuneError(ErrorCode.EPERM, `only the job owner may ${what}`);
  }
}
