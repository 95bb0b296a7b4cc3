import { Injectable } from '@nestjs/common';
import type { NonceStore, SignedKind } from '@commune/protocol';
import { RedisConnections } from '../redis/redis.module.js';

/**
 * The scheduler's one NonceStore (protocol signing.ts): every signed request's nonce is claimed
 * here, in Redis, shared by every replica. The key holds the kind, so nonces of different kinds
 * never collide; SET NX makes the claim atomic.
 */
@Injectable()
export class RedisNonceStore implements NonceStore {
  constructor(private readonly redis: RedisConnections) {}

  async claim(signer: string, kind: SignedKind, nonce: string, ttlMs: number): Promise<boolean> {
    return (await this.redis.command.set(this.redis.key('nonce', kind, signer, nonce), '1', 'PX', ttlMs, 'NX')) !== null;
  }
}
