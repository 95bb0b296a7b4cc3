import { randomBytes } from 'node:crypto';
import { Wallet } from 'ethers';
import { SignedKind, signRequest, type SignedTransfer, type Transfer } from '@commune/protocol';
import { startBank, type BankApp } from '../src/bank-app.js';
import { PrismaService } from '../src/database/prisma.service.js';
import { LedgerService } from '../src/ledger/ledger.service.js';
import { dropIsolated, isolatedEnvironment } from '../../../test/support/services.js';

/** A test token (the bank needs at least 32 characters). */
export const SERVICE_TOKEN = 'test-service-token-0123456789abcdef';

/** A bank on its own Postgres schema and Redis prefix (dropped by `stop`). */
export interface TestBank {
  bank: BankApp;
  ledger: LedgerService;
  env: Record<string, string>;
  /** Available balances of these addresses straight from the accounts table (0 for unknown ones). */
  balances(addresses: readonly string[]): Promise<Map<string, bigint>>;
  stop(): Promise<void>;
}

export async function startTestBank(overrides: Record<string, string> = {}): Promise<TestBank> {
  const env = isolatedEnvironment({ BANK_SERVICE_TOKEN: SERVICE_TOKEN, ...overrides });
  const bank = await startBank(env);
  const pool = bank.app.get(PrismaService).pool;
  return {
    bank,
    ledger: bank.app.get(LedgerService),
    env,
    async balances(addresses) {
      const result = await pool.query<{ address: string; balance: string }>('SELECT address, balance::text AS balance FROM accounts WHERE address = ANY($1::text[])', [addresses]);
      const found = new Map(result.rows.map((row) => [row.address, BigInt(row.balance)]));
      return new Map(addresses.map((address) => [address, found.get(address) ?? 0n]));
    },
    async stop() {
      await bank.close();
      await dropIsolated(env);
    },
  };
}

export function randomAddress(): string {
  return Wallet.createRandom().address;
}

export function uniqueKey(prefix = 'k'): string {
  return `${prefix}-${randomBytes(8).toString('hex')}`;
}

/** A transfer signed the way the SDK signs it (signRequest of kind transfer). */
export async function signedTransfer(wallet: Wallet, fields: Partial<Transfer> & Pick<Transfer, 'to' | 'amount'>, signer: Wallet = wallet): Promise<SignedTransfer> {
  const transfer: Transfer = { from: wallet.address, idempotencyKey: uniqueKey('t'), expiresAt: Date.now() + 60_000, ...fields };
  return { transfer, signature: await signRequest(signer, SignedKind.transfer, transfer) };
}

export interface HttpReply<T = unknown> {
  status: number;
  body: T;
}

/** A small JSON client of the bank's HTTP API. */
export function bankClient(url: string, token: string | null = SERVICE_TOKEN) {
  async function call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpReply<T>> {
    const response = await fetch(url + path, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (the /docs page, /metrics)
    }
    return { status: response.status, body: parsed as T };
  }
  return {
    get: <T = unknown>(path: string, headers?: Record<string, string>) => call<T>('GET', path, undefined, headers),
    post: <T = unknown>(path: string, body: unknown, headers?: Record<string, string>) => call<T>('POST', path, body, headers),
  };
}
