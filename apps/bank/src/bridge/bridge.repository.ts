import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Inject, Injectable } from '@nestjs/common';
import type pg from 'pg';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { PrismaService } from '../database/prisma.service.js';
import type { WithdrawalRecord, WithdrawalStatus } from './domain/withdrawal.js';

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
  txHash: string;
  logIndex: number;
  blockNumber: number;
  blockHash: string;
  vault: string;
  depositId: string;
  from: string;
  ledgerAccount: string;
  amount: string;
  transferId: string;
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

  // ---------------------------------------------------------------- cursors and deposits

  async cursor(name: string): Promise<Cursor | null> {
    const result = await this.pool.query<{ block_number: string; block_hash: string | null }>('SELECT block_number, block_hash FROM bridge_cursors WHERE name = $1', [name]);
    const row = result.rows[0];
    return row ? { blockNumber: Number(row.block_number), blockHash: row.block_hash } : null;
  }

  async saveCursor(name: string, cursor: Cursor): Promise<void> {
    await this.pool.query(
      `INSERT INTO bridge_cursors (name, block_number, block_hash) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET block_number = EXCLUDED.block_number, block_hash = EXCLUDED.block_hash, updated_at = now()`,
      [name, cursor.blockNumber, cursor.blockHash],
    );
  }

  async depositRecorded(chainId: number, txHash: string, logIndex: number): Promise<boolean> {
    const result = await this.pool.query('SELECT 1 FROM bridge_deposits WHERE chain_id = $1 AND tx_hash = $2 AND log_index = $3', [chainId, txHash.toLowerCase(), logIndex]);
    return (result.rowCount ?? 0) > 0;
  }

  async recordDeposit(row: DepositRow): Promise<void> {
    await this.pool.query(
      `INSERT INTO bridge_deposits (chain_id, tx_hash, log_index, block_number, block_hash, vault, deposit_id, from_address, ledger_account, amount, transfer_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
      [row.chainId, row.txHash.toLowerCase(), row.logIndex, row.blockNumber, row.blockHash, row.vault, row.depositId, row.from, row.ledgerAccount, row.amount, row.transferId],
    );
  }

  async depositsOf(ledgerAccount: string, limit: number): Promise<DepositRow[]> {
    const result = await this.pool.query(
      `SELECT chain_id, tx_hash, log_index, block_number, block_hash, vault, deposit_id::text, from_address, ledger_account, amount::text, transfer_id
       FROM bridge_deposits WHERE ledger_account = $1 ORDER BY credited_at DESC LIMIT $2`,
      [ledgerAccount, limit],
    );
    return result.rows.map((row) => ({
      chainId: Number(row.chain_id),
      txHash: row.tx_hash,
      logIndex: row.log_index,
      blockNumber: Number(row.block_number),
      blockHash: row.block_hash,
      vault: row.vault,
      depositId: row.deposit_id,
      from: row.from_address,
      ledgerAccount: row.ledger_account,
      amount: row.amount,
      transferId: row.transfer_id,
    }));
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
