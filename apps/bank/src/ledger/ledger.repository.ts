import { setTimeout as sleep } from 'node:timers/promises';
import { Inject, Injectable } from '@nestjs/common';
import type pg from 'pg';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { PrismaService } from '../database/prisma.service.js';
import { Metrics } from '../health/metrics.js';
import type { HoldStatus } from './domain/holds.js';
import type { AccountKind, AccountState, EntryKind, PlannedEntry, Posting } from './domain/posting.js';
import { formatUnits, toUnits, type Units } from './domain/units.js';

/** A hold row as locked (remaining lives in the escrow account, locked separately). */
export interface HoldRow {
  id: string;
  accountId: string;
  ownerAddress: string;
  escrowAccountId: string;
  reference: string;
  amount: Units;
  posted: Units;
  status: HoldStatus;
  expiresAt: Date;
}

export interface TransferRecord {
  id: string;
  kind: EntryKind;
  memo: string | null;
  createdAt: Date;
}

export interface PaymentRecord {
  key: string;
  recipientId: string;
  amount: Units;
  fee: Units;
}

export interface StoredEntry {
  id: string;
  transferId: string;
  amount: Units;
  balanceAfter: Units;
  kind: EntryKind;
  counterparty: string | null;
  memo: string | null;
  createdAt: Date;
}

export type KeyClaim = { claimed: true } | { claimed: false; requestHash: string; response: unknown };

/** One idempotency key of a batch (several transfers claimed in one transaction). */
export interface BatchKey {
  scope: string;
  key: string;
  requestHash: string;
  /**
   * The outcome the key keeps if its request commits, written with the claim (no second write
   * of the row): a refused request gives its key back (postBatch `unclaim`), and a rollback
   * takes the key and its outcome away together.
   */
  response: unknown;
}

/** One transfer of a batch, planned against the locked balances, with the outcome its key keeps. */
export interface BatchPosting {
  transfer: TransferRecord;
  entries: PlannedEntry[];
}

const keyOf = (scope: string, key: string): string => `${scope}\u0000${key}`;

/** What a consistency check of the whole ledger finds (all zero / empty on a healthy ledger). */
export interface LedgerAudit {
  /** Sum of every balance, the bridge's included: zero, since every transfer sums to zero. */
  sumOfBalances: string;
  /** Transfers whose entries do not sum to zero. */
  unbalancedTransfers: string[];
  /** Accounts whose balance differs from the sum of their entries. */
  driftedAccounts: string[];
  /** Accounts below zero that may not be. */
  negativeAccounts: string[];
  /** Held holds whose remaining (escrow balance) differs from amount minus posted, or closed holds with money left. */
  inconsistentHolds: string[];
}

/** Postgres errors after which the whole transaction is simply run again. */
const retryableCodes = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected

const accountColumns = 'id::text AS id, address, kind, balance::text AS balance, allow_negative';
interface AccountRow {
  id: string;
  address: string;
  kind: AccountKind;
  balance: string;
  allow_negative: boolean;
}
const toAccountState = (row: AccountRow): AccountState => ({
  id: row.id,
  address: row.address,
  kind: row.kind,
  balance: toUnits(row.balance),
  allowNegative: row.allow_negative,
});

const holdColumns = `h.id, h.account_id::text AS account_id, o.address AS owner_address, h.escrow_account_id::text AS escrow_account_id,
  h.reference, h.amount::text AS amount, h.posted::text AS posted, h.status, h.expires_at`;
interface HoldRowSql {
  id: string;
  account_id: string;
  owner_address: string;
  escrow_account_id: string;
  reference: string;
  amount: string;
  posted: string;
  status: HoldStatus;
  expires_at: Date;
}
const toHoldRow = (row: HoldRowSql): HoldRow => ({
  id: row.id,
  accountId: row.account_id,
  ownerAddress: row.owner_address,
  escrowAccountId: row.escrow_account_id,
  reference: row.reference,
  amount: toUnits(row.amount),
  posted: toUnits(row.posted),
  status: row.status,
  expiresAt: row.expires_at,
});

/**
 * The statements of one ledger transaction (READ COMMITTED plus explicit row locks). Lock order,
 * the same in every operation so that concurrent transactions never deadlock:
 *   idempotency key -> hold row -> accounts (ascending id) -> payment keys (ascending key).
 */
export class LedgerTransaction {
  /** The idempotency key this transaction claimed, and whether its outcome is written yet. */
  private claimed: { scope: string; key: string } | null = null;
  outcomeRecorded = false;

  constructor(private readonly client: pg.PoolClient) {}

  /**
   * Claims an idempotency key for this transaction. A concurrent transaction with the same key
   * waits here until the first commits (then sees its outcome) or rolls back (then proceeds).
   */
  async claimKey(scope: string, key: string, requestHash: string): Promise<KeyClaim> {
    const inserted = await this.client.query(
      'INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
      [scope, key, requestHash],
    );
    if (inserted.rowCount === 1) {
      this.claimed = { scope, key };
      return { claimed: true };
    }
    const existing = await this.client.query<{ request_hash: string; response: unknown }>(
      'SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND key = $2',
      [scope, key],
    );
    const row = existing.rows[0];
    if (!row) throw Object.assign(new Error('idempotency key vanished while claimed'), { code: '40001' });
    return { claimed: false, requestHash: row.request_hash, response: row.response };
  }

  /** Stores the outcome a retry with the same key gets. */
  async recordOutcome(scope: string, key: string, response: unknown): Promise<void> {
    await this.client.query('UPDATE idempotency_keys SET response = $3 WHERE scope = $1 AND key = $2', [scope, key, JSON.stringify(response)]);
    this.outcomeRecorded = true;
  }

  /**
   * A batch's first statement: claims its keys, in ascending (scope, key) order (so that two
   * batches never wait on each other's keys crosswise), and only then locks the accounts
   * `accountIds` in ascending id order: the global lock order (key -> accounts) in one round
   * trip. The keys must be distinct. Returns the locked accounts and, for each key that was
   * claimed before (committed by an earlier transaction, or by a concurrent one this statement
   * waited for), its request hash and outcome; every other key is now this transaction's.
   *
   * The account scan is gated by a filter on the key insert (`(SELECT count(*) FROM claimed)`,
   * an uncorrelated subquery: PostgreSQL evaluates it once, as a one-time filter, before the scan
   * reads its first row), so every key is inserted, waiting on concurrent claims if need be,
   * before the first account row is locked.
   */
  async claimKeysAndLockAccounts(
    keys: readonly BatchKey[],
    accountIds: Iterable<string>,
  ): Promise<{ existing: Map<string, { requestHash: string; response: unknown }>; accounts: Map<string, AccountState> }> {
    const sorted = [...keys].sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const unique = [...new Set(accountIds)];
    const result = await this.client.query<AccountRow & { claimed: number; claimed_keys: Array<[string, string]> | null }>(
      `WITH claimed AS (
         INSERT INTO idempotency_keys (scope, key, request_hash, response)
         SELECT k.scope, k.key, k.request_hash, k.response FROM unnest($1::text[], $2::text[], $3::text[], $6::json[]) WITH ORDINALITY AS k(scope, key, request_hash, response, n)
         ORDER BY k.n
         ON CONFLICT DO NOTHING
         RETURNING scope, key
       ), tally AS (
         SELECT count(*)::int AS claimed FROM claimed
       )
       SELECT ${accountColumns}, (SELECT claimed FROM tally) AS claimed,
         CASE WHEN (SELECT claimed FROM tally) < $5 THEN (SELECT json_agg(json_build_array(c.scope, c.key)) FROM claimed c) END AS claimed_keys
       FROM accounts WHERE (SELECT claimed FROM tally) >= 0 AND id = ANY($4::bigint[])
       ORDER BY id FOR UPDATE`,
      [sorted.map((k) => k.scope), sorted.map((k) => k.key), sorted.map((k) => k.requestHash), unique, sorted.length, sorted.map((k) => JSON.stringify(k.response))],
    );
    if (result.rows.length !== unique.length) throw new Error(`accounts missing: asked ${unique.length}, found ${result.rows.length}`);
    const accounts = new Map<string, AccountState>();
    for (const row of result.rows) accounts.set(row.id, toAccountState(row));
    const existing = new Map<string, { requestHash: string; response: unknown }>();
    const first = result.rows[0];
    if (!first || first.claimed === sorted.length) return { existing, accounts };
    const claimed = new Set((first.claimed_keys ?? []).map(([scope, key]) => keyOf(scope, key)));
    const taken = sorted.filter((k) => !claimed.has(keyOf(k.scope, k.key)));
    const rows = await this.client.query<{ scope: string; key: string; request_hash: string; response: unknown }>(
      `SELECT i.scope, i.key, i.request_hash, i.response FROM idempotency_keys i
       JOIN unnest($1::text[], $2::text[]) AS k(scope, key) ON i.scope = k.scope AND i.key = k.key`,
      [taken.map((k) => k.scope), taken.map((k) => k.key)],
    );
    for (const row of rows.rows) existing.set(keyOf(row.scope, row.key), { requestHash: row.request_hash, response: row.response });
    if (existing.size !== taken.length) throw Object.assign(new Error('idempotency keys vanished while claimed'), { code: '40001' });
    return { existing, accounts };
  }

  /**
   * Writes many transfers in one statement: their rows, their entries (in order, so each
   * account's entries follow the order its balance moved) and every touched account's final
   * balance (the keys' outcomes were written with their claim), and gives back the keys of the
   * requests the batch refused (`unclaim`: a refusal leaves no key).
   */
  async postBatch(postings: readonly BatchPosting[], balances: ReadonlyMap<string, Units>, unclaim: ReadonlyArray<{ scope: string; key: string }> = []): Promise<void> {
    if (postings.length === 0) {
      if (unclaim.length > 0) {
        await this.client.query(
          `DELETE FROM idempotency_keys i USING unnest($1::text[], $2::text[]) AS k(scope, key) WHERE i.scope = k.scope AND i.key = k.key`,
          [unclaim.map((k) => k.scope), unclaim.map((k) => k.key)],
        );
      }
      return;
    }
    const entries = postings.flatMap((posting) => posting.entries.map((entry) => ({ entry, transfer: posting.transfer })));
    await this.client.query(
      `WITH transfer AS (
         INSERT INTO transfers (id, kind, memo, created_at)
         SELECT t.id, t.kind, t.memo, t.created_at FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS t(id, kind, memo, created_at)
       ), entry AS (
         INSERT INTO entries (transfer_id, account_id, amount, balance_after, kind, counterparty, memo, created_at)
         SELECT e.transfer_id, e.account_id, e.amount, e.balance_after, e.kind, e.counterparty, e.memo, e.created_at
         FROM unnest($5::text[], $6::bigint[], $7::numeric[], $8::numeric[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])
           WITH ORDINALITY AS e(transfer_id, account_id, amount, balance_after, kind, counterparty, memo, created_at, n)
         ORDER BY e.n
       )${unclaim.length > 0 ? `, unclaimed AS (
         DELETE FROM idempotency_keys i USING unnest($15::text[], $16::text[]) AS k(scope, key) WHERE i.scope = k.scope AND i.key = k.key
       )` : ''}
       UPDATE accounts AS a SET balance = b.balance
       FROM unnest($13::bigint[], $14::numeric[]) AS b(id, balance)
       WHERE a.id = b.id`,
      [
        postings.map((p) => p.transfer.id),
        postings.map((p) => p.transfer.kind),
        postings.map((p) => p.transfer.memo),
        postings.map((p) => p.transfer.createdAt),
        entries.map((e) => e.transfer.id),
        entries.map((e) => e.entry.accountId),
        entries.map((e) => formatUnits(e.entry.amount)),
        entries.map((e) => formatUnits(e.entry.balanceAfter)),
        entries.map((e) => e.entry.kind),
        entries.map((e) => e.entry.counterparty),
        entries.map((e) => e.entry.memo),
        entries.map((e) => e.transfer.createdAt),
        [...balances.keys()],
        [...balances.values()].map(formatUnits),
        ...(unclaim.length > 0 ? [unclaim.map((k) => k.scope), unclaim.map((k) => k.key)] : []),
      ],
    );
  }

  /** Locks accounts in ascending id order (the order every transaction uses). */
  async lockAccounts(ids: Iterable<string>): Promise<Map<string, AccountState>> {
    const unique = [...new Set(ids)];
    const result = await this.client.query<AccountRow>(
      `SELECT ${accountColumns} FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`,
      [unique],
    );
    if (result.rows.length !== unique.length) throw new Error(`accounts missing: asked ${unique.length}, found ${result.rows.length}`);
    return new Map(result.rows.map((row) => [row.id, toAccountState(row)]));
  }

  async lockHold(holdId: string): Promise<HoldRow | null> {
    const result = await this.client.query<HoldRowSql>(
      `SELECT ${holdColumns} FROM holds h JOIN accounts o ON o.id = h.account_id WHERE h.id = $1 FOR UPDATE OF h`,
      [holdId],
    );
    return result.rows[0] ? toHoldRow(result.rows[0]) : null;
  }

  /** A hold's escrow account; nobody else can see it before this transaction commits. */
  async createEscrowAccount(address: string): Promise<AccountState> {
    const result = await this.client.query<AccountRow>(
      `INSERT INTO accounts (address, kind) VALUES ($1, 'hold') RETURNING ${accountColumns}`,
      [address],
    );
    return toAccountState(result.rows[0]!);
  }

  async insertHold(hold: { id: string; accountId: string; escrowAccountId: string; reference: string; amount: Units; expiresAt: Date; createdAt: Date }): Promise<void> {
    await this.client.query(
      `INSERT INTO holds (id, account_id, escrow_account_id, reference, amount, posted, status, expires_at, created_at)
       VALUES ($1, $2, $3, $4, $5, 0, 'held', $6, $7)`,
      [hold.id, hold.accountId, hold.escrowAccountId, hold.reference, formatUnits(hold.amount), hold.expiresAt, hold.createdAt],
    );
  }

  async updateHold(holdId: string, change: { amount: Units; posted: Units; status: HoldStatus; expiresAt: Date; resolvedAt: Date | null }): Promise<void> {
    await this.client.query(
      'UPDATE holds SET amount = $2, posted = $3, status = $4, expires_at = $5, resolved_at = $6 WHERE id = $1',
      [holdId, formatUnits(change.amount), formatUnits(change.posted), change.status, change.expiresAt, change.resolvedAt],
    );
  }

  /**
   * Records payments by key, in ascending key order; returns the keys that were new. A key paid
   * before (by any hold, ever) is left alone: the primary key makes payment at-most-once.
   */
  async claimPayments(holdId: string, transfer: TransferRecord, payments: readonly PaymentRecord[]): Promise<Set<string>> {
    if (payments.length === 0) return new Set();
    const sorted = [...payments].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const result = await this.client.query<{ key: string }>(
      `INSERT INTO payments (key, hold_id, transfer_id, recipient_id, amount, fee, created_at)
       SELECT p.key, $1, $2, p.recipient_id, p.amount, p.fee, $3
       FROM unnest($4::text[], $5::bigint[], $6::numeric[], $7::numeric[]) WITH ORDINALITY AS p(key, recipient_id, amount, fee, n)
       ORDER BY p.n
       ON CONFLICT (key) DO NOTHING
       RETURNING key`,
      [
        holdId,
        transfer.id,
        transfer.createdAt,
        sorted.map((p) => p.key),
        sorted.map((p) => p.recipientId),
        sorted.map((p) => formatUnits(p.amount)),
        sorted.map((p) => formatUnits(p.fee)),
      ],
    );
    return new Set(result.rows.map((row) => row.key));
  }

  /**
   * Writes a transfer, its entries and the new balances in one statement; with `outcome`, also the
   * claimed key's outcome (one round trip less on the hot path: the caller must return exactly it).
   */
  async post(transfer: TransferRecord, posting: Posting, outcome?: unknown): Promise<void> {
    const { entries, balances } = posting;
    const recordOutcome = outcome !== undefined && this.claimed !== null;
    await this.client.query(
      `WITH transfer AS (
         INSERT INTO transfers (id, kind, memo, created_at) VALUES ($1, $2, $3, $4)
       ), entry AS (
         INSERT INTO entries (transfer_id, account_id, amount, balance_after, kind, counterparty, memo, created_at)
         SELECT $1, e.account_id, e.amount, e.balance_after, e.kind, e.counterparty, e.memo, $4
         FROM unnest($5::bigint[], $6::numeric[], $7::numeric[], $8::text[], $9::text[], $10::text[])
           WITH ORDINALITY AS e(account_id, amount, balance_after, kind, counterparty, memo, n)
         ORDER BY e.n
       )${recordOutcome ? `, outcome AS (
         UPDATE idempotency_keys SET response = $13 WHERE scope = $14 AND key = $15
       )` : ''}
       UPDATE accounts AS a SET balance = b.balance
       FROM unnest($11::bigint[], $12::numeric[]) AS b(id, balance)
       WHERE a.id = b.id`,
      [
        transfer.id,
        transfer.kind,
        transfer.memo,
        transfer.createdAt,
        entries.map((e) => e.accountId),
        entries.map((e) => formatUnits(e.amount)),
        entries.map((e) => formatUnits(e.balanceAfter)),
        entries.map((e) => e.kind),
        entries.map((e) => e.counterparty),
        entries.map((e) => e.memo),
        [...balances.keys()],
        [...balances.values()].map(formatUnits),
        ...(recordOutcome ? [JSON.stringify(outcome), this.claimed!.scope, this.claimed!.key] : []),
      ],
    );
    if (recordOutcome) this.outcomeRecorded = true;
  }
}

/** Accounts, transfers, holds and payments in Postgres. Only this class touches the database. */
@Injectable()
export class LedgerRepository {
  /** address -> account id (ids never change, so the cache is never stale, only bounded). */
  private readonly accountIds = new Map<string, string>();

  constructor(
    private readonly prisma: PrismaService,
    @Inject(BANK_ENV) private readonly env: BankEnv,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Runs `work` in one transaction, again from the start after a serialization failure or a
   * deadlock (at most MAX_TRANSACTION_ATTEMPTS times, with jittered backoff).
   */
  async transaction<T>(work: (tx: LedgerTransaction) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.prisma.pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const result = await work(new LedgerTransaction(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        const code = (error as { code?: unknown }).code;
        if (typeof code === 'string' && retryableCodes.has(code) && attempt < this.env.MAX_TRANSACTION_ATTEMPTS) {
          this.metrics.transactionRetries.inc();
          await sleep(Math.random() * Math.min(200, 2 ** attempt * 2));
          continue;
        }
        throw error;
      } finally {
        client.release(broken);
      }
    }
  }

  /**
   * The ids of accounts by address, creating the missing ones (outside any ledger transaction,
   * so that creation never holds a lock a transfer waits for; an unused empty account is harmless).
   */
  async ensureAccounts(accounts: ReadonlyArray<{ address: string; kind: AccountKind; allowNegative?: boolean }>): Promise<Map<string, string>> {
    const ids = new Map<string, string>();
    const missing = new Map<string, { address: string; kind: AccountKind; allowNegative?: boolean }>();
    for (const account of accounts) {
      const id = this.accountIds.get(account.address);
      if (id !== undefined) ids.set(account.address, id);
      else missing.set(account.address, account);
    }
    if (missing.size === 0) return ids;
    const wanted = [...missing.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const addresses = wanted.map((account) => account.address);
    // Insert first (sorted, so concurrent creators take the unique-index locks in one order), then read.
    await this.prisma.pool.query(
      `INSERT INTO accounts (address, kind, allow_negative)
       SELECT a.address, a.kind, a.allow_negative FROM unnest($1::text[], $2::text[], $3::boolean[]) WITH ORDINALITY AS a(address, kind, allow_negative, n)
       ORDER BY a.n
       ON CONFLICT (address) DO NOTHING`,
      [addresses, wanted.map((account) => account.kind), wanted.map((account) => account.allowNegative ?? false)],
    );
    const found = await this.prisma.pool.query<{ id: string; address: string }>('SELECT id::text AS id, address FROM accounts WHERE address = ANY($1::text[])', [addresses]);
    for (const row of found.rows) {
      ids.set(row.address, row.id);
      this.remember(row.address, row.id);
    }
    return ids;
  }

  private remember(address: string, id: string): void {
    if (this.accountIds.size >= this.env.ACCOUNT_CACHE_SIZE) {
      const oldest = this.accountIds.keys().next();
      if (!oldest.done) this.accountIds.delete(oldest.value);
    }
    this.accountIds.set(address, id);
  }

  /** An account by address, or null when it was never used (reads never create accounts). */
  async findAccount(address: string): Promise<{ id: string; balance: Units } | null> {
    const account = await this.prisma.account.findUnique({ where: { address }, select: { id: true, balance: true } });
    return account ? { id: account.id.toString(), balance: toUnits(account.balance.toFixed()) } : null;
  }

  /** Entries of an account, newest first, with ids below `before`. */
  async entries(accountId: string, before: string | null, limit: number): Promise<StoredEntry[]> {
    const rows = await this.prisma.entry.findMany({
      where: { accountId: BigInt(accountId), ...(before !== null ? { id: { lt: BigInt(before) } } : {}) },
      orderBy: { id: 'desc' },
      take: limit,
    });
    return rows.map((row) => ({
      id: row.id.toString(),
      transferId: row.transferId,
      amount: toUnits(row.amount.toFixed()),
      balanceAfter: toUnits(row.balanceAfter.toFixed()),
      kind: row.kind as EntryKind,
      counterparty: row.counterparty,
      memo: row.memo,
      createdAt: row.createdAt,
    }));
  }

  /** A hold and what remains in it, without locking (reads). */
  async findHold(holdId: string): Promise<{ row: HoldRow; remaining: Units } | null> {
    const result = await this.prisma.pool.query<HoldRowSql & { remaining: string }>(
      `SELECT ${holdColumns}, e.balance::text AS remaining FROM holds h
       JOIN accounts o ON o.id = h.account_id JOIN accounts e ON e.id = h.escrow_account_id WHERE h.id = $1`,
      [holdId],
    );
    const row = result.rows[0];
    return row ? { row: toHoldRow(row), remaining: toUnits(row.remaining) } : null;
  }

  /** Ids of held holds whose expiry has passed, oldest first. */
  async dueHolds(now: Date, limit: number): Promise<string[]> {
    const rows = await this.prisma.hold.findMany({ where: { status: 'held', expiresAt: { lte: now } }, orderBy: { expiresAt: 'asc' }, take: limit, select: { id: true } });
    return rows.map((row) => row.id);
  }

  /** Checks the invariants over the whole ledger (O(size of the ledger): for tests and operators). */
  async audit(): Promise<LedgerAudit> {
    const pool = this.prisma.pool;
    const [sum, unbalanced, drifted, negative, holds] = await Promise.all([
      pool.query<{ total: string }>('SELECT COALESCE(sum(balance), 0)::text AS total FROM accounts'),
      pool.query<{ transfer_id: string }>('SELECT transfer_id FROM entries GROUP BY transfer_id HAVING sum(amount) <> 0 LIMIT 100'),
      pool.query<{ address: string }>(
        `SELECT a.address FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) e ON e.account_id = a.id
         WHERE a.balance <> COALESCE(e.total, 0) LIMIT 100`,
      ),
      pool.query<{ address: string }>('SELECT address FROM accounts WHERE balance < 0 AND NOT allow_negative LIMIT 100'),
      pool.query<{ id: string }>(
        `SELECT h.id FROM holds h JOIN accounts e ON e.id = h.escrow_account_id
         WHERE (h.status = 'held' AND e.balance <> h.amount - h.posted) OR (h.status <> 'held' AND e.balance <> 0) LIMIT 100`,
      ),
    ]);
    return {
      sumOfBalances: sum.rows[0]!.total,
      unbalancedTransfers: unbalanced.rows.map((row) => row.transfer_id),
      driftedAccounts: drifted.rows.map((row) => row.address),
      negativeAccounts: negative.rows.map((row) => row.address),
      inconsistentHolds: holds.rows.map((row) => row.id),
    };
  }
}
