import { Inject, Injectable } from '@nestjs/common';
import type { z } from 'zod';
import {
  AccountSchema, BankErrorSchema, CommuneError, ErrorCode, HoldSchema, PostPaymentsReplySchema,
  type Account, type CreateHold, type Hold, type IncreaseHold, type PostPayments, type PostPaymentsReply,
} from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';

/**
 * The scheduler's side of the bank's service API (holds and payments). Every call carries the
 * caller's idempotency key, so a retry after a timeout or a bank restart gets the first outcome.
 */
@Injectable()
export class BankClient {
  /** A bank call that takes longer than this is abandoned (and retried by its caller). */
  static readonly requestTimeoutMs = 10_000;

  constructor(@Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv) {}

  get enabled(): boolean {
    return Boolean(this.env.BANK_URL);
  }

  createHold(body: CreateHold): Promise<Hold> {
    return this.call('POST', '/holds', body, HoldSchema);
  }
  increaseHold(holdId: string, body: IncreaseHold): Promise<Hold> {
    return this.call('POST', `/holds/${encodeURIComponent(holdId)}/increase`, body, HoldSchema);
  }
  postPayments(holdId: string, body: PostPayments): Promise<PostPaymentsReply> {
    return this.call('POST', `/holds/${encodeURIComponent(holdId)}/payments`, body, PostPaymentsReplySchema);
  }
  releaseHold(holdId: string, idempotencyKey: string): Promise<Hold> {
    return this.call('POST', `/holds/${encodeURIComponent(holdId)}/release`, { idempotencyKey }, HoldSchema);
  }
  getHold(holdId: string): Promise<Hold> {
    return this.call('GET', `/holds/${encodeURIComponent(holdId)}`, undefined, HoldSchema);
  }
  account(address: string): Promise<Account> {
    return this.call('GET', `/accounts/${encodeURIComponent(address)}`, undefined, AccountSchema);
  }

  private async call<S extends z.ZodType>(method: 'GET' | 'POST', path: string, body: unknown, schema: S): Promise<z.infer<S>> {
    if (!this.env.BANK_URL) throw new CommuneError(ErrorCode.ENOBANK, 'this scheduler has no BANK_URL: only free jobs run');
    let response: Response;
    try {
      response = await fetch(new URL(path, this.env.BANK_URL), {
        method,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.env.BANK_SERVICE_TOKEN}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(BankClient.requestTimeoutMs),
      });
    } catch (error) {
      throw new CommuneError(ErrorCode.ESCHEDULER, `the bank at ${this.env.BANK_URL} did not answer ${method} ${path}: ${(error as Error).message}`);
    }
    const json: unknown = await response.json().catch(() => null);
    if (!response.ok) {
      const problem = BankErrorSchema.safeParse(json);
      if (problem.success && problem.data.code in ErrorCode) throw new CommuneError(problem.data.code as ErrorCode, problem.data.message);
      throw new CommuneError(ErrorCode.ESCHEDULER, `the bank answered ${response.status} to ${method} ${path}`);
    }
    return schema.parse(json);
  }
}
