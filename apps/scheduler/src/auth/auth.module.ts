import { Global, Module } from '@nestjs/common';
import { RedisNonceStore } from './nonce-store.js';
import { OwnerAuth } from './owner-auth.service.js';
import { ReadAccess } from './read-access.js';
import { SignedRequests } from './signed-requests.js';

/**
 * Signed requests: the one verification (SignedRequests) with the one nonce store (Redis), and
 * owner-signed REST (protocol OwnerRequestSchema), and who may read a job (ReadAccess). Global: every service that takes a signed
 * request verifies it here.
 */
@Global()
@Module({ providers: [RedisNonceStore, SignedRequests, OwnerAuth, ReadAccess], exports: [SignedRequests, OwnerAuth, ReadAccess] })
export class AuthModule {}
