import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Inject, Injectable } from '@nestjs/common';
import type pg from 'pg';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { PrismaService } from '../database/prisma.service.js';
import type { ChainIdentity, DepositKeyFormat, RecordedChain } from './domain/chain-identity.js';
import type { WithdrawalRecord, WithdrawalStatus } from './domain/withdrawal.js';

/** Cursor positions kept per cursor (bridge_anchors): where to read again from after a deep reorganisation. */
export const ANCHORS_KEPT = 64;

/**
 * bridge-schema.sql next to this file (tests run src/) or, from dist/bridge/, in src/bridge/
 * (tsc does not copy .sql files).
 */
export function bridgeSchemaFile(): string {
  for (const candidate of ['./bridge-schema.sql', '../../src/bridge/bridge-schema.sql']) {
    const file = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(file)) return file;
  }
  throw new Error('bridge-schema.sql not found next to the bridge module nor in apps/bank/src/bridge/');
}

export interface DepositRow {
  chainId: number;
  /** Null only on rows older than bridge_chain that a dev-chain reset left behind. */
  genesisHash: string | null;
  txHash: string;
  /** Its place among the vault's Deposited events of its transaction. */
  ordinal: number;
  /** Where the bank first saw it. */
  logIndex: number;
  blockNumber: number;
  blockHash: string;
  vault: string;
  depositId: string;
  from: string;
  ledgerAccount: string;
  amount: string;
  /** The mint's idempotency key, fixed when the row is written. */
  ledgerKey: string;
  /** Null until the ledger has credited it. */
  transferId: string | null;
}

const depositColumns = `chain_id, genesis_hash, tx_hash, ordinal, log_index, block_number, block_hash, vault, deposit_id::text AS deposit_id, from_address,
  ledger_account, amount::text AS amount, ledger_key, transfer_id`;

function toDepositRow(row: Record<string, unknown>): DepositRow {
  return {
    chainId: Number(row.chain_id),
    genesisHash: row.genesis_hash as string | null,
    txHash: row.tx_hash as string,
    ordinal: row.ordinal as number,
    logIndex: row.log_index as number,
    blockNumber: Number(row.block_number),
    blockHash: row.block_hash as string,
    vault: row.vault as string,
    depositId: row.deposit_id as string,
    from: row.from_address as string,
    ledgerAccount: row.ledger_account as string,
    amount: row.amount as string,
    ledgerKey: row.ledger_key as string,
    transferId: row.transfer_id as string | null,
  };
}

export interface Cursor {
  blockNumber: number;
  blockHash: string | null;
}

/** Columns a sender pass may change on a withdrawal. */
export type WithdrawalPatch = Partial<
  Pick<
    WithdrawalRecord,
    | 'status'
    | 'holdId'
    | 'nonce'
    | 'txHash'
    | 'rawTx'
    | 'accepted'
    | 'rejections'
    | 'replacements'
    | 'resends'
    | 'cancelling'
    | 'lastBroadcastAt'
    | 'blockNumber'
    | 'signedAtBlock'
    | 'error'
  > & { transferId: string | null; finished: boolean }
>;

const patchColumns: Record<Exclude<keyof WithdrawalPatch, 'finished'>, string> = {
  status: 'status',
  holdId: 'hold_id',
  nonce: 'nonce',
  txHash: 'tx_hash',
  rawTx: 'raw_tx',
  accepted: 'accepted',
  rejections: 'rejections',
  replacements: 'replacements',
  resends: 'resends',
  cancelling: 'cancelling',
  lastBroadcastAt: 'last_broadcast_at',
  blockNumber: 'block_number',
  signedAtBlock: 'signed_at_block',
  error: 'error',
  transferId: 'transfer_id',
};

interface WithdrawalRow {
  withdrawal_id: string;
  from_address: string;
  to_address: string;
  amount: string;
  idempotency_key: string;
  request_hash: string;
  status: WithdrawalStatus;
  hold_id: string | null;
  nonce: string | null;
  tx_hash: string | null;
  raw_tx: string | null;
  accepted: boolean;
  rejections: number;
  replacements: number;
  resends: number;
  cancelling: boolean;
  last_broadcast_at: Date | null;
  block_number: string | null;
  signed_at_block: string | null;
  error: string | null;
  created_at: Date;
  updated_at: Date;
}

function toRecord(row: WithdrawalRow): WithdrawalRecord {
  return {
    withdrawalId: row.withdrawal_id,
    from: row.from_address,
    to: row.to_address,
    amount: row.amount,
    idempotencyKey: row.idempotency_key,
    requestHash: row.request_hash,
    status: row.status,
    holdId: row.hold_id,
    nonce: row.nonce === null ? null : Number(row.nonce),
    txHash: row.tx_hash,
    rawTx: row.raw_tx,
    accepted: row.accepted,
    rejections: row.rejections,
    replacements: row.replacements,
    resends: row.resends,
    cancelling: row.cancelling,
    lastBroadcastAt: row.last_broadcast_at,
    blockNumber: row.block_number === null ? null : Number(row.block_number),
    signedAtBlock: row.signed_at_block === null ? null : Number(row.signed_at_block),
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/**
 * The bridge's tables (bridge-schema.sql) in the bank's Postgres schema, through the bank's pool
 * (PrismaService.pool, search_path set to the bank's schema). Only this class writes SQL.
 */
@Injectable()
export class BridgeRepository {
  private readonly pool: pg.Pool;

  constructor(prisma: PrismaService, @Inject(BANK_ENV) private readonly env: BankEnv) {
    this.pool = prisma.pool;
  }

  /** Creates the bridge's tables if they are missing. Replicas starting together take turns. */
  async applySchema(): Promise<void> {
    const sql = readFileSync(bridgeSchemaFile(), 'utf8');
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`commune-bridge-schema:${this.env.DATABASE_SCHEMA}`]);
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${this.env.DATABASE_SCHEMA}"`);
      await client.query(sql);
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`commune-bridge-schema:${this.env.DATABASE_SCHEMA}`]).catch(() => undefined);
      client.release();
    }
  }

  /**
   * Runs `work` while holding a Postgres advisory lock named `name` in this bank's schema, or
   * returns `skipped` when another process holds it: the deposit watcher and the withdrawal
   * sender each run in one place at a time, whichever replica BullMQ hands the job to.
   */
  async exclusively<T>(name: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    const lockName = `commune-bridge:${this.env.DATABASE_SCHEMA}:${name}`;
    const client = await this.pool.connect();
    let locked = false;
    try {
      const result = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [lockName]);
      locked = result.rows[0].locked;
      if (!locked) return { ran: false };
      return { ran: true, value: await work() };
    } finally {
      if (locked) await client.query('SELECT pg_advisory_unlock(hashtext($1))', [lockName]).catch(() => undefined);
      client.release();
    }
  }

  /** Runs `work` in one Postgres transaction on one connection. */
  private async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const value = await work(client);
      await client.query('COMMIT');
      return value;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw error;
    } finally {
      client.release();
    }
  }

  // ---------------------------------------------------------------- the chain's identity

  async recordedChain(): Promise<RecordedChain | null> {
    const result = await this.pool.query('SELECT chain_id, genesis_hash, vault, deposit_keys, resets FROM bridge_chain WHERE id = 1');
    const row = result.rows[0];
    if (!row) return null;
    return { chainId: Number(row.chain_id), genesisHash: row.genesis_hash, vault: row.vault, depositKeys: row.deposit_keys as DepositKeyFormat, resets: row.resets };
  }

  /**
   * The newest block the bridge read as final before it recorded its chain (a bank upgraded in
   * place): its deposit cursor's, else its newest credited deposit's. Null: it never read any.
   */
  async legacyFinalBlock(): Promise<{ blockNumber: number; blockHash: string } | null> {
    const cursor = await this.pool.query(
      "SELECT block_number, block_hash FROM bridge_cursors WHERE name LIKE 'deposits:%' AND block_hash IS NOT NULL ORDER BY updated_at DESC LIMIT 1",
    );
    const row = cursor.rows[0] ?? (await this.pool.query('SELECT block_number, block_hash FROM bridge_deposits WHERE genesis_hash IS NULL ORDER BY block_number DESC LIMIT 1')).rows[0];
    return row ? { blockNumber: Number(row.block_number), blockHash: row.block_hash } : null;
  }

  /**
   * Records the chain the bridge's state is about, once (a concurrent first record wins). With
   * `adoptLegacy`, deposits recorded before identities are declared to be this chain's.
   */
  async recordChain(identity: ChainIdentity, depositKeys: DepositKeyFormat, adoptLegacy: boolean): Promise<void> {
    await this.transaction(async (client) => {
      await client.query(
        `INSERT INTO bridge_chain (id, chain_id, genesis_hash, vault, deposit_keys) VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO NOTHING`,
        [identity.chainId, identity.genesisHash, identity.vault, depositKeys],
      );
      if (adoptLegacy) await client.query('UPDATE bridge_deposits SET genesis_hash = $2 WHERE genesis_hash IS NULL AND chain_id = $1', [identity.chainId, identity.genesisHash]);
    });
  }

  async recordVault(vault: string): Promise<void> {
    await this.pool.query('UPDATE bridge_chain SET vault = $1, updated_at = now() WHERE id = 1', [vault]);
  }

  /**
   * Moves the bridge to a new dev chain, in one transaction: the new chain is recorded (its
   * deposits keyed with its genesis), the deposit cursors and anchors of the old one are dropped
   * (the watcher reads the new chain from the start block), and every open withdrawal that was
   * signed for the old chain goes back to `pending` without a transaction, to be signed afresh for
   * the new one (withdrawal-sender.service.ts: nonces, fees and the payment are the new chain's).
   * The ledger is not touched: credits and holds stay. Deposit rows of the old chain stay as
   * history; their genesis keeps them apart from the new chain's.
   */
  async resetForNewChain(identity: ChainIdentity, reason: string): Promise<{ cursors: number; withdrawals: number }> {
    return this.transaction(async (client) => {
      await client.query(
        `INSERT INTO bridge_chain (id, chain_id, genesis_hash, vault, deposit_keys) VALUES (1, $1, $2, $3, 'chain')
         ON CONFLICT (id) DO UPDATE SET chain_id = EXCLUDED.chain_id, genesis_hash = EXCLUDED.genesis_hash, vault = EXCLUDED.vault,
           deposit_keys = 'chain', resets = bridge_chain.resets + 1, recorded_at = now(), updated_at = now()`,
        [identity.chainId, identity.genesisHash, identity.vault],
      );
      const cursors = await client.query("DELETE FROM bridge_cursors WHERE name LIKE 'deposits:%'");
      await client.query("DELETE FROM bridge_anchors WHERE name LIKE 'deposits:%'");
      const withdrawals = await client.query(
        `UPDATE bridge_withdrawals SET status = 'pending', nonce = NULL, tx_hash = NULL, raw_tx = NULL, accepted = false, rejections = 0,
           replacements = 0, resends = 0, cancelling = false, last_broadcast_at = NULL, block_number = NULL, signed_at_block = NULL,
           error = $1, updated_at = now()
         WHERE status IN ('pending', 'sent') AND nonce IS NOT NULL`,
        [`signed for a chain that is gone (${reason}); to be signed again for the new one`.slice(0, 500)],
      );
      return { cursors: cursors.rowCount ?? 0, withdrawals: withdrawals.rowCount ?? 0 };
    });
  }

  // ---------------------------------------------------------------- cursors and anchors

  async cursor(name: string): Promise<Cursor | null> {
    const result = await this.pool.query<{ block_number: string; block_hash: string | null }>('SELECT block_number, block_hash FROM bridge_cursors WHERE name = $1', [name]);
    const row = result.rows[0];
    return row ? { blockNumber: Number(row.block_number), blockHash: row.block_hash } : null;
  }

  /** Moves the cursor and keeps its position as an anchor (the newest ANCHORS_KEPT of them). */
  async saveCursor(name: string, cursor: Cursor): Promise<void> {
    await this.pool.query(
      `INSERT INTO bridge_cursors (name, block_number, block_hash) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, updated_at = now()`,
      [name, cursor.blockNumber, cursor.blockHash],
    );
    if (cursor.blockHash === null) return;
    await this.pool.query(
      `INSERT INTO bridge_anchors (name, block_number, block_hash) VALUES ($1, $2, $3)
       ON CONFLICT (name, block_number) DO UPDATE SET block_hash = EXCLUDED.block_hash`,
      [name, cursor.blockNumber, cursor.blockHash],
    );
    await this.pool.query(
      `DELETE FROM bridge_anchors WHERE name = $1 AND block_number <
         (SELECT block_number FROM bridge_anchors WHERE name = $1 ORDER BY block_number DESC OFFSET $2 LIMIT 1)`,
      [name, ANCHORS_KEPT - 1],
    );
  }

  /** Anchors below `blockNumber`, newest first. */
  async anchorsBelow(name: string, blockNumber: number): Promise<Cursor[]> {
    const result = await this.pool.query('SELECT block_number, block_hash FROM bridge_anchors WHERE name = $1 AND block_number < $2 ORDER BY block_number DESC LIMIT $3', [
      name,
      blockNumber,
      ANCHORS_KEPT,
    ]);
    return result.rows.map((row) => ({ blockNumber: Number(row.block_number), blockHash: row.block_hash }));
  }

  /** Puts the cursor back to `base` (null: before the start block) and forgets the anchors above it. */
  async rewindCursor(name: string, base: Cursor | null): Promise<void> {
    await this.transaction(async (client) => {
      if (base) {
        await client.query('UPDATE bridge_cursors SET block_number = $2, block_hash = $3, updated_at = now() WHERE name = $1', [name, base.blockNumber, base.blockHash]);
        await client.query('DELETE FROM bridge_anchors WHERE name = $1 AND block_number > $2', [name, base.blockNumber]);
      } else {
        await client.query('DELETE FROM bridge_cursors WHERE name = $1', [name]);
        await client.query('DELETE FROM bridge_anchors WHERE name = $1', [name]);
      }
    });
  }

  // ---------------------------------------------------------------- deposits

  /** The deposit (chain, genesis, transaction, ordinal), credited or being credited, if the bank has taken it on. */
  async deposit(chainId: number, genesisHash: string, txHash: string, ordinal: number): Promise<DepositRow | null> {
    const result = await this.pool.query(`SELECT ${depositColumns} FROM bridge_deposits WHERE chain_id = $1 AND genesis_hash = $2 AND tx_hash = $3 AND ordinal = $4`, [
      chainId,
      genesisHash,
      txHash.toLowerCase(),
      ordinal,
    ]);
    return result.rows[0] ? toDepositRow(result.rows[0]) : null;
  }

  /** Takes a deposit on before it is credited; the row already there when another scan wrote it first. */
  async insertDeposit(row: Omit<DepositRow, 'transferId'> & { genesisHash: string }): Promise<DepositRow> {
    const inserted = await this.pool.query(
      `INSERT INTO bridge_deposits (chain_id, genesis_hash, tx_hash, ordinal, log_index, block_number, block_hash, vault, deposit_id, from_address, ledger_account, amount, ledger_key)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING ${depositColumns}`,
      [
        row.chainId,
        row.genesisHash,
        row.txHash.toLowerCase(),
        row.ordinal,
        row.logIndex,
        row.blockNumber,
        row.blockHash,
        row.vault,
        row.depositId,
        row.from,
        row.ledgerAccount,
        row.amount,
        row.ledgerKey,
      ],
    );
    if (inserted.rows[0]) return toDepositRow(inserted.rows[0]);
    const existing = await this.deposit(row.chainId, row.genesisHash, row.txHash, row.ordinal);
    if (!existing) throw new Error(`deposit ${row.txHash}#${row.ordinal} conflicts with another row under ledger key ${row.ledgerKey}`);
    return existing;
  }

  async markDepositCredited(ledgerKey: string, transferId: string): Promise<void> {
    await this.pool.query('UPDATE bridge_deposits SET transfer_id = $2, credited_at = now() WHERE ledger_key = $1', [ledgerKey, transferId]);
  }

  async depositsOf(ledgerAccount: string, limit: number): Promise<DepositRow[]> {
    const result = await this.pool.query(`SELECT ${depositColumns} FROM bridge_deposits WHERE ledger_account = $1 ORDER BY credited_at DESC LIMIT $2`, [ledgerAccount, limit]);
    return result.rows.map(toDepositRow);
  }

  // ---------------------------------------------------------------- withdrawals

  private static readonly columns = `withdrawal_id, from_address, to_address, amount::text AS amount, idempotency_key, request_hash, status, hold_id,
    nonce, tx_hash, raw_tx, accepted, rejections, replacements, resends, cancelling, last_broadcast_at, block_number, signed_at_block, error, created_at, updated_at`;

  async withdrawal(withdrawalId: string): Promise<WithdrawalRecord | null> {
    const result = await this.pool.query<WithdrawalRow>(`SELECT ${BridgeRepository.columns} FROM bridge_withdrawals WHERE withdrawal_id = $1`, [withdrawalId]);
    return result.rows[0] ? toRecord(result.rows[0]) : null;
  }

  async withdrawalByKey(from: string, idempotencyKey: string): Promise<WithdrawalRecord | null> {
    const result = await this.pool.query<WithdrawalRow>(`SELECT ${BridgeRepository.columns} FROM bridge_withdrawals WHERE from_address = $1 AND idempotency_key = $2`, [
      from,
      idempotencyKey,
    ]);
    return result.rows[0] ? toRecord(result.rows[0]) : null;
  }

  /** Stores a new withdrawal request; null when (from, idempotencyKey) already has one. */
  async insertWithdrawal(request: {
    withdrawalId: string;
    from: string;
    to: string;
    amount: string;
    idempotencyKey: string;
    requestHash: string;
    signature: string;
    expiresAt: number;
    /** The bank's clock, not the database's: the hold's expiry is derived from it. */
    createdAt: Date;
  }): Promise<WithdrawalRecord | null> {
    const result = await this.pool.query<WithdrawalRow>(
      `INSERT INTO bridge_withdrawals (withdrawal_id, from_address, to_address, amount, idempotency_key, request_hash, signature, expires_at, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) ON CONFLICT DO NOTHING RETURNING ${BridgeRepository.columns}`,
      [
        request.withdrawalId,
        request.from,
        request.to,
        request.amount,
        request.idempotencyKey,
        request.requestHash,
        request.signature,
        new Date(request.expiresAt),
        request.createdAt,
      ],
    );
    return result.rows[0] ? toRecord(result.rows[0]) : null;
  }

  /** Forgets a request whose hold the ledger refused (nothing was reserved, nothing was sent). */
  async deleteUnfundedWithdrawal(withdrawalId: string): Promise<void> {
    await this.pool.query(`DELETE FROM bridge_withdrawals WHERE withdrawal_id = $1 AND hold_id IS NULL AND nonce IS NULL AND status = 'pending'`, [withdrawalId]);
  }

  async updateWithdrawal(withdrawalId: string, patch: WithdrawalPatch): Promise<WithdrawalRecord> {
    const sets: string[] = ['updated_at = now()'];
    const values: unknown[] = [withdrawalId];
    for (const [field, column] of Object.entries(patchColumns) as Array<[keyof typeof patchColumns, string]>) {
      if (patch[field] === undefined) continue;
      values.push(patch[field]);
      sets.push(`${column} = $${values.length}`);
    }
    if (patch.finished) sets.push('finished_at = now()');
    const result = await this.pool.query<WithdrawalRow>(`UPDATE bridge_withdrawals SET ${sets.join(', ')} WHERE withdrawal_id = $1 RETURNING ${BridgeRepository.columns}`, values);
    if (!result.rows[0]) throw new Error(`withdrawal ${withdrawalId} vanished`);
    return toRecord(result.rows[0]);
  }

  /** Open withdrawals (pending, sent), oldest first. */
  async openWithdrawals(limit: number): Promise<WithdrawalRecord[]> {
    const result = await this.pool.query<WithdrawalRow>(
      `SELECT ${BridgeRepository.columns} FROM bridge_withdrawals WHERE status IN ('pending', 'sent') ORDER BY created_at, withdrawal_id LIMIT $1`,
      [limit],
    );
    return result.rows.map(toRecord);
  }

  /** The highest nonce held by an open withdrawal's transaction, or null. */
  async highestOpenNonce(): Promise<number | null> {
    const result = await this.pool.query<{ nonce: string | null }>(`SELECT max(nonce) AS nonce FROM bridge_withdrawals WHERE status IN ('pending', 'sent') AND nonce IS NOT NULL`);
    const nonce = result.rows[0]?.nonce;
    return nonce === null || nonce === undefined ? null : Number(nonce);
  }
}
