import { Global, Module } from '@nestjs/common';
import { RedisNonceStore } from './nonce-store.js';
import { OwnerAuth } from './owner-auth.service.js';
import { SignedRequests } from './signed-requests.js';

/**
 * Signed requests: the one verification (SignedRequests) with the one nonce store (Redis), and
 * owner-signed REST (protocol OwnerRequestSchema). Global: every service that takes a signed
 * request verifies it here.
 */
@Global()
@Module({ providers: [RedisNonceStore, SignedRequests, OwnerAuth], exports: [SignedRequests, OwnerAuth] })
export class AuthModule {}
