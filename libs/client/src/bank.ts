import type { z } from 'zod';
import {
  AccountSchema,
  BankErrorSchema,
  CommuneError,
  ErrorCode,
  HistoryPageSchema,
  TransferReceiptSchema,
  type Account,
  type HistoryPage,
  type SignedTransfer,
  type TransferReceipt,
} from '@commune/protocol';
import { isKnownCode } from './connection.js';

/**
 * The SDK's link to the bank (apps/bank, its README "HTTP API"): public account reads and signed
 * transfers. Amounts are smallest units here; the wallet module turns them into DCC.
 */

export interface BankLinkOptions {
  /** How long one request may take; default 30 s. */
  requestTimeoutMs?: number;
  /** For tests: replaces the global fetch. */
  fetch?: typeof fetch;
}

/** Attempts at a signed transfer when the bank cannot be reached or fails (the idempotency key makes a retry safe). */
const transferAttempts = 3;

export class BankLink {
  readonly url: URL;
  private readonly requestTimeoutMs: number;
  private readonly fetch: typeof fetch;

  constructor(url: URL, options: BankLinkOptions = {}) {
    // A trailing slash makes relative paths land under any path prefix of the base URL.
    this.url = new URL(url.href.endsWith('/') ? url.href : url.href + '/');
    this.requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** GET /accounts/:address: the available balance (an address never seen has 0). */
  account(address: string): Promise<Account> {
    return this.request('GET', `accounts/${encodeURIComponent(address)}`, undefined, AccountSchema);
  }

  /** GET /accounts/:address/history: one page of ledger entries, newest first. */
  history(address: string, before?: string, limit?: number): Promise<HistoryPage> {
    const query = new URLSearchParams();
    if (before !== undefined) query.set('before', before);
    if (limit !== undefined) query.set('limit', String(limit));
    const search = query.size > 0 ? `?${query}` : '';
    return this.request('GET', `accounts/${encodeURIComponent(address)}/history${search}`, undefined, HistoryPageSchema);
  }

  /** POST /transfers, retried with the same signed body when the bank cannot be reached or fails unexpectedly. */
  async transfer(signed: SignedTransfer): Promise<TransferReceipt> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.request('POST', 'transfers', signed, TransferReceiptSchema);
      } catch (error) {
        const retryable = error instanceof CommuneError && error.code === ErrorCode.EBANK;
        if (!retryable || attempt >= transferAttempts || Date.now() >= signed.transfer.expiresAt) throw error;
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    }
  }

  private async request<S extends z.ZodType>(method: 'GET' | 'POST', relative: string, body: unknown, schema: S): Promise<z.infer<S>> {
    const url = new URL(relative, this.url);
    let response: Response;
    try {
      response = await this.fetch(url, {
        method,
        signal: AbortSignal.timeout(this.requestTimeoutMs),
        headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch (error) {
      throw new CommuneError(ErrorCode.EBANK, `${method} ${url.href} failed: the bank could not be reached (${error instanceof Error ? error.message : String(error)})`);
    }
    const json: unknown = await response.json().catch(() => undefined);
    if (!response.ok) {
      const reply = BankErrorSchema.safeParse({ ok: false, ...(typeof json === 'object' && json !== null ? json : {}) });
      if (reply.success && isKnownCode(reply.data.code)) throw new CommuneError(reply.data.code, reply.data.message);
      const code = response.status === 404 ? ErrorCode.ENOTFOUND : ErrorCode.EBANK;
      throw new CommuneError(code, `${method} ${url.href} answered ${response.status}${reply.success ? `: ${reply.data.code}: ${reply.data.message}` : ''}`);
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw new CommuneError(ErrorCode.EBANK, `malformed answer to ${method} ${url.href}: ${parsed.error.message}`);
    return parsed.data;
  }
}
