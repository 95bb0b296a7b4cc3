import { Module } from '@nestjs/common';
import { OwnerAuth } from './owner-auth.service.js';

/** Owner-signed REST requests (protocol OwnerRequestSchema), shared by the jobs and results controllers. */
@Module({ providers: [OwnerAuth], exports: [OwnerAuth] })
export class AuthModule {}
