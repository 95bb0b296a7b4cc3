import type pg from 'pg';
import { waitFor } from './services.js';

/**
 * Money checks for suites that run paid jobs against a real bank: balances read over the bank's
 * HTTP API, funding through an in-process bank on the same schema, and the ledger of one paid job
 * checked end to end (every accepted slice paid exactly once, the payer's debit equal to the
 * workers' credits plus fees, the hold released).
 */

/** Where the bank sends operator fees when BANK_FEE_ACCOUNT is unset (apps/bank DEV_FEE_ACCOUNT). */
export const devFeeAccount = '0x0000000000000000000000000000000000000fee';

/** An account's available balance (smallest unit) as the bank reports it; 0 for an address it never saw. */
export async function balanceOf(bankUrl: string, address: string): Promise<bigint> {
  const response = await fetch(`${bankUrl}/accounts/${address}`, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`GET /accounts/${address} answered ${response.status}`);
  return BigInt(((await response.json()) as { balance: string }).balance);
}

/** Balances of `addresses`, keyed by lower-case address. */
export async function balancesOf(bankUrl: string, addresses: readonly string[]): Promise<Map<string, bigint>> {
  const balances = new Map<string, bigint>();
  for (const address of addresses) balances.set(address.toLowerCase(), await balanceOf(bankUrl, address));
  return balances;
}

/**
 * Credits `amountUnits` to `address` through a bank started in this process on `bankEnv`'s schema
 * (as another replica would be) and closed again: the bank under test may be a separate process.
 */
export async function mintInProcess(bankEnv: Record<string, string>, port: number, address: string, amountUnits: string, idempotencyKey: string): Promise<void> {
  const { startBank, LedgerService } = await import('../../apps/bank/src/index.js');
  const funding = await startBank({ ...bankEnv, PORT: String(port) });
  try {
    await funding.app.get(LedgerService).mint({ idempotencyKey, to: address, amount: amountUnits });
  } finally {
    await funding.close();
  }
}

/** The bank's own audit of its whole ledger (LedgerService.audit), through a bank started in this process on `bankEnv`'s schema. */
export async function auditLedgerInProcess(bankEnv: Record<string, string>, port: number): Promise<unknown> {
  const { startBank, LedgerService } = await import('../../apps/bank/src/index.js');
  const auditor = await startBank({ ...bankEnv, PORT: String(port) });
  try {
    return await auditor.app.get(LedgerService).audit();
  } finally {
    await auditor.close();
  }
}

export interface PaidJobLedger {
  /** The scheduler's schema (search_path set) and the bank's. */
  schedulerDb: pg.Client;
  bankDb: pg.Client;
  bankUrl: string;
  jobId: string;
  /** Slices of the job: each must have been paid exactly once. */
  slices: number;
  /** The payer. */
  owner: string;
  /** Every earnings account that may have been paid for the job's slices. */
  payees: readonly string[];
  /** balancesOf(owner, fee account, payees) taken before the job was deployed, with nothing else paying them meanwhile. */
  before: Map<string, bigint>;
  feeAccount?: string;
  /** Bound on the wait for every payment to be settled and the hold released. */
  settleTimeoutMs?: number;
}

export interface LedgerSummary {
  holdId: string;
  /** Bank payments on the job's hold (= slices). */
  payments: number;
  /** What the payees were credited, the fees, and what the payer was debited, smallest units. */
  credited: bigint;
  fees: bigint;
  debited: bigint;
  /** When the scheduler recorded its last payment settled, and when the bank released the hold (ms since the epoch). */
  lastSettledAt: number;
  releasedAt: number;
}

/**
 * Waits (bounded) until every payment of a finished paid job is settled and its hold released,
 * then checks its ledger: one priced payment per slice in the scheduler; one bank payment per
 * slice on the job's hold, keyed pay:<job>:<slice> and covering slices 0..slices-1, whose sum is
 * what the scheduler priced; each payee credited exactly what the scheduler priced for its
 * slices; the fee account credited the fees; the payer debited exactly credits + fees, which is
 * what the hold posted.
 */
export async function expectLedgerBalanced(ledger: PaidJobLedger): Promise<LedgerSummary> {
  const { schedulerDb, bankDb, bankUrl, jobId, slices, owner, before } = ledger;
  const feeAccount = ledger.feeAccount ?? devFeeAccount;
  const count = async (db: pg.Client, sql: string, params: unknown[]) => Number((await db.query<{ n: string }>(sql, params)).rows[0]!.n);
  const holdId = (await schedulerDb.query<{ hold_id: string | null }>('SELECT hold_id FROM jobs WHERE id = $1', [jobId])).rows[0]?.hold_id;
  expect(holdId).toBeTruthy();
  await waitFor('every payment settled and the hold released', async () =>
    (await count(schedulerDb, 'SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND settled_at IS NULL', [jobId])) === 0 &&
    (await count(bankDb, "SELECT count(*) AS n FROM holds WHERE id = $1 AND status = 'released'", [holdId])) === 1, ledger.settleTimeoutMs ?? 30_000, 100);
  const paid = (await schedulerDb.query<{ n: string; total: string }>('SELECT count(*) AS n, coalesce(sum(payment), 0)::text AS total FROM slice_results WHERE job_id = $1 AND payment IS NOT NULL', [jobId])).rows[0]!;
  expect(Number(paid.n)).toBe(slices);
  const posted = (await bankDb.query<{ n: string; keys: string; amount: string; fee: string; right_keys: string; lowest: string | null; highest: string | null }>(
    `SELECT count(*) AS n, count(DISTINCT key) AS keys, coalesce(sum(amount), 0)::text AS amount, coalesce(sum(fee), 0)::text AS fee,
       count(*) FILTER (WHERE key ~ ('^pay:' || $2 || ':[0-9]+$')) AS right_keys,
       min(split_part(key, ':', 3)::bigint)::text AS lowest, max(split_part(key, ':', 3)::bigint)::text AS highest
     FROM payments WHERE hold_id = $1`,
    [holdId, jobId],
  )).rows[0]!;
  expect(Number(posted.n)).toBe(slices);
  expect(Number(posted.keys)).toBe(slices);
  expect(Number(posted.right_keys)).toBe(slices);
  expect([posted.lowest, posted.highest]).toEqual(['0', String(slices - 1)]);
  expect(posted.amount).toBe(paid.total);
  // Each payee got what the scheduler priced for its slices; the payer paid exactly the credits plus the fees.
  const byPayee = (await schedulerDb.query<{ payee: string; total: string }>('SELECT payee, sum(payment)::text AS total FROM slice_results WHERE job_id = $1 GROUP BY payee', [jobId])).rows;
  const payees = new Set(ledger.payees.map((address) => address.toLowerCase()));
  expect(byPayee.map((row) => row.payee.toLowerCase()).filter((payee) => !payees.has(payee))).toEqual([]);
  const after = await balancesOf(bankUrl, [owner, feeAccount, ...payees]);
  const delta = (address: string) => after.get(address.toLowerCase())! - (before.get(address.toLowerCase()) ?? 0n);
  let credited = 0n;
  for (const payee of payees) {
    const expected = BigInt(byPayee.find((row) => row.payee.toLowerCase() === payee)?.total ?? '0');
    expect(delta(payee)).toBe(expected);
    credited += expected;
  }
  expect(credited.toString()).toBe(posted.amount);
  const fees = BigInt(posted.fee);
  expect(delta(feeAccount)).toBe(fees);
  const debited = -delta(owner);
  expect(debited).toBe(credited + fees);
  const hold = (await bankDb.query<{ posted: string; resolved_at: Date }>('SELECT posted::text, resolved_at FROM holds WHERE id = $1', [holdId])).rows[0]!;
  expect(BigInt(hold.posted)).toBe(credited + fees);
  const lastSettled = (await schedulerDb.query<{ t: Date }>('SELECT max(settled_at) AS t FROM slice_results WHERE job_id = $1', [jobId])).rows[0]!.t;
  return { holdId: holdId!, payments: Number(posted.n), credited, fees, debited, lastSettledAt: lastSettled.getTime(), releasedAt: hold.resolved_at.getTime() };
}
