import { createHash, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { CommuneError, ErrorCode } from '@commune/protocol';
import { BANK_ENV, type BankEnv } from '../config/env.js';

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();

/** Service endpoints (holds, payments) answer only `Authorization: Bearer <BANK_SERVICE_TOKEN>`. */
@Injectable()
export class ServiceTokenGuard implements CanActivate {
  private readonly expected: Buffer;

  constructor(@Inject(BANK_ENV) env: BankEnv) {
    this.expected = digest(`Bearer ${env.BANK_SERVICE_TOKEN}`);
  }

  canActivate(context: ExecutionContext): boolean {
    const header = context.switchToHttp().getRequest<{ headers: Record<string, string | string[] | undefined> }>().headers.authorization;
    // Compared as digests of equal length, in constant time.
    if (typeof header === 'string' && timingSafeEqual(digest(header), this.expected)) return true;
    throw new CommuneError(ErrorCode.EUNAUTHORIZED, 'this endpoint needs Authorization: Bearer <BANK_SERVICE_TOKEN>');
  }
}
