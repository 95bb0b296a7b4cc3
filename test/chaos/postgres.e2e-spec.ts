import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { Redis } from 'ioredis';
import { parseUnits, Wallet } from 'ethers';
import { init } from '@commune/client';
import { startBank, LedgerService, type BankApp } from '../../apps/bank/src/index.js';
import { freePort, spawnScheduler, spawnWorker, connectedWorkers, type RunningProcess } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment, uniqueName, waitFor } from '../support/services.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Slices in the job; each busy-waits a few ms in its sandbox, so the job runs for tens of seconds and the faults land mid-job. */
const total = 4000;
/** How long each outage lasts before PostgreSQL is started again (long enough for result batches to fail). */
const outageMs = 2_000;
/** The job's offer per slice, DCC; each slice is paid its measured time at 1 DCC/s, at least 0.001, never above this. */
const offerDcc = 0.01;
const serviceToken = 'chaos-postgres-service-token-0123456789abcdef';

/**
 * PostgreSQL blips are survived (issue 8). A PostgreSQL cluster of the test's own (its own port,
 * created with pg_createcluster, dropped afterwards even on failure), a real scheduler process,
 * two real worker processes with earnings accounts and the bank (in this process: a pool error it did
 * not survive would end the test run) on it, and a running paid job of several thousand slices.
 * The cluster is restarted cleanly mid-job, then crashed (SIGKILL of its postmaster) and started
 * again. The scheduler and the bank stay alive throughout, both /health say 503 degraded
 * (postgres down) during each outage and 200 ok after, the job completes, every result is there
 * exactly once and correct, and every slice is paid exactly once (the ledger balanced, the hold
 * released). Prints what recovery took.
 */
describe('chaos: PostgreSQL restarted and crashed under a running job (e2e)', () => {
  const cluster = uniqueName('chaos_pg').toLowerCase();
  const dataDir = `/var/lib/postgresql/15/${cluster}`;
  let port = 0;
  let clusterCreated = false;
  let env: Record<string, string>;
  let bankEnv: Record<string, string>;
  let bank: BankApp | undefined;
  let scheduler: (RunningProcess & { url: string }) | undefined;
  const workers: RunningProcess[] = [];
  /**
   * Two workers, one sandbox each, each with its own earnings account. Two, not one: a loaded
   * machine can make an honest worker's slice times outliers against the job's median often enough
   * for the scheduler to stop giving it paid work (PaymentBounds.maxOutliersPerWorker), which would
   * stall a one-worker paid job for reasons unrelated to PostgreSQL.
   */
  const earnings = [Wallet.createRandom().address.toLowerCase(), Wallet.createRandom().address.toLowerCase()];
  const home = mkdtempSync(join(tmpdir(), 'commune-chaos-pg-'));

  const pgctl = (...args: string[]) => run('pg_ctlcluster', ['--skip-systemctl-redirect', '15', cluster, ...args], { timeout: 60_000 });

  beforeAll(async () => {
    port = await freePort();
    await run('pg_createcluster', ['15', cluster, '--port', String(port), '--', '--auth=trust'], { timeout: 60_000 });
    clusterCreated = true;
    await pgctl('start');
    env = isolatedEnvironment({
      DATABASE_URL: `postgresql://postgres@127.0.0.1:${port}/commune`,
      LEASE_SWEEP_INTERVAL_MS: '250',
      SETTLEMENT_INTERVAL_MS: '250',
      ESCROW_SLICES: '1000',
      MARKET_RATE_DCC_PER_SECOND: '1',
      MINIMUM_SLICE_PAYMENT_DCC: '0.001',
      BANK_SERVICE_TOKEN: serviceToken,
      NODE_OPTIONS: '--max-old-space-size=128',
    });
    bankEnv = { ...env, DATABASE_SCHEMA: `${env.DATABASE_SCHEMA}_bank`, REDIS_PREFIX: `${env.REDIS_PREFIX}_bank`, NODE_OPTIONS: '', PORT: String(await freePort()) };
    bank = await startBank(bankEnv);
    scheduler = await spawnScheduler({ ...env, BANK_URL: bank.url }, await freePort());
    for (const account of earnings) workers.push(spawnWorker(scheduler.url, 1, ['--earnings', account]));
    await waitFor('the workers to connect', async () => (await connectedWorkers(scheduler!.url)) === 2, 20_000, 100);
  }, 90_000);

  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.stop().catch(() => undefined)));
    await scheduler?.stop().catch(() => undefined);
    await bank?.close().catch(() => undefined);
    if (env) await dropIsolated({ ...env, DATABASE_URL: 'postgresql://127.0.0.1:1/none' }).catch(() => undefined);
    if (bankEnv) await dropIsolated({ ...bankEnv, DATABASE_URL: 'postgresql://127.0.0.1:1/none' }).catch(() => undefined);
    if (clusterCreated) await run('pg_dropcluster', ['--stop', '15', cluster], { timeout: 60_000 }).catch((error: unknown) => console.error(`dropping cluster ${cluster} failed: ${String(error)}`));
  }, 90_000);

  /** A service's /health: its status and body (bounded: the probe itself waits at most 2 s per dependency). */
  async function health(url = scheduler!.url): Promise<{ status: number; body: Record<string, unknown> }> {
    const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(5_000) });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  }

  /** Results stored for the job, read straight from the test's cluster; null while it is down. */
  async function stored(jobId: string): Promise<number | null> {
    const client = new pg.Client({ connectionString: env.DATABASE_URL, connectionTimeoutMillis: 2_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      const result = await client.query<{ n: string }>(`SELECT count(*) AS n FROM "${env.DATABASE_SCHEMA}".slice_results WHERE job_id = $1`, [jobId]);
      return Number(result.rows[0]!.n);
    } catch {
      return null;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  function expectSchedulerAlive(): void {
    expect(scheduler!.child.exitCode).toBeNull();
    expect(scheduler!.child.signalCode).toBeNull();
  }

  interface Recovery {
    fault: string;
    degradedSeenAfterMs: number;
    degradedBody: Record<string, unknown>;
    outageMs: number;
    healthOkAfterStartMs: number;
    resultsResumedAfterStartMs: number;
  }

  /**
   * Injects one fault: `down()` takes PostgreSQL away, the outage lasts `outageMs`, `up()` brings
   * it back. Measures when /health turned degraded, when it was ok again and when the job's
   * stored results grew again, all counted from the moment PostgreSQL was started.
   */
  async function fault(name: string, jobId: string, down: () => Promise<void>, up: () => Promise<void>): Promise<Recovery> {
    const before = await stored(jobId);
    expect(before).not.toBeNull();
    const downAt = Date.now();
    await down();
    const [degraded, bankDegraded] = await Promise.all([scheduler!.url, bank!.url].map((url) =>
      waitFor(`${url}/health to report degraded after ${name}`, async () => {
        const answer = await health(url);
        return answer.status === 503 ? answer : null;
      }, 15_000, 50)));
    const degradedSeenAfterMs = Date.now() - downAt;
    for (const answer of [degraded!, bankDegraded!]) {
      expect(answer.body).toMatchObject({ status: 'degraded', redis: 'ok', down: ['postgres'] });
      expect(String(answer.body.postgres)).toMatch(/^unavailable/);
    }
    await sleep(Math.max(0, outageMs - (Date.now() - downAt)));
    expectSchedulerAlive();
    await up();
    const upAt = Date.now();
    await waitFor(`/health to be ok after ${name}`, async () => (await health()).status === 200, 30_000, 50);
    const healthOkAfterStartMs = Date.now() - upAt;
    await waitFor(`the bank's /health to be ok after ${name}`, async () => (await health(bank!.url)).status === 200, 30_000, 50);
    await waitFor(`results of ${jobId} to be stored again after ${name}`, async () => {
      const now = await stored(jobId);
      return now !== null && (now > before! || now === total);
    }, 30_000, 50);
    const resultsResumedAfterStartMs = Date.now() - upAt;
    expectSchedulerAlive();
    return { fault: name, degradedSeenAfterMs, degradedBody: degraded!.body, outageMs: upAt - downAt, healthOkAfterStartMs, resultsResumedAfterStartMs };
  }

  /** SIGKILL of the postmaster (a crash), then start again once its orphaned backends have gone (bounded). */
  async function crash(): Promise<void> {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    expect(pid).toBeGreaterThan(1);
    process.kill(pid, 'SIGKILL');
  }
  async function startAfterCrash(): Promise<void> {
    await waitFor('the crashed cluster to start again', async () => {
      await pgctl('start');
      return true;
    }, 30_000, 250);
  }

  it('keeps the scheduler up, reports degraded during each outage, and completes the job with every result once and correct', async () => {
    const { compute, wallet } = await init({ scheduler: scheduler!.url, home });
    const owner = await wallet.get();
    await bank!.app.get(LedgerService).mint({ idempotencyKey: `chaos-pg-mint-${cluster}`, to: await owner.getAddress(), amount: parseUnits('1000', 18).toString() });
    const job = compute.for(0, total - 1, (i: number) => {
      const end = Date.now() + 6;
      while (Date.now() < end) {
        // busy: a slice takes a few ms, so the job is still running when the faults land
      }
      progress(1);
      return i * 3 + 1;
    });
    const accepted = new Promise<void>((resolve) => job.once('accepted', () => resolve()));
    const startedAt = Date.now();
    const execution = job.exec(offerDcc);
    execution.catch(() => undefined);
    await accepted;
    const jobId = job.id as string;
    expect(jobId).toBeTruthy();

    await waitFor('15% of the job stored', async () => ((await stored(jobId)) ?? 0) >= total * 0.15, 60_000, 100);
    const clean = await fault('clean restart (pg_ctlcluster stop -m fast, start)', jobId, async () => {
      await pgctl('stop', '-m', 'fast');
    }, async () => {
      await pgctl('start');
    });

    await waitFor('50% of the job stored', async () => ((await stored(jobId)) ?? 0) >= total * 0.5, 60_000, 100);
    const crashed = await fault('crash (SIGKILL of the postmaster, then start)', jobId, crash, startAfterCrash);

    let bound: NodeJS.Timeout | undefined;
    const results = await Promise.race([
      execution,
      new Promise<never>((_resolve, reject) => {
        bound = setTimeout(() => {
          void stored(jobId).then((count) => reject(new Error(
            `the job did not complete within 90 s of its deploy: ${count} of ${total} results stored\n` +
              `scheduler:\n${scheduler!.output().split('\n').slice(-40).join('\n')}\nworkers:\n${workers.map((worker) => worker.output().split('\n').slice(-10).join('\n')).join('\n')}`,
          )));
        }, 90_000);
      }),
    ]).finally(() => clearTimeout(bound));
    const completedAfterMs = Date.now() - startedAt;
    expectSchedulerAlive();
    for (const worker of workers) expect(worker.child.exitCode).toBeNull();

    // What the client got: every slice's result, correct.
    const values = Array.from(results as Iterable<unknown>);
    expect(values).toHaveLength(total);
    const wrong = values.map((value, i) => (value === i * 3 + 1 ? null : i)).filter((i) => i !== null);
    expect(wrong).toEqual([]);

    // What PostgreSQL holds: exactly one row per slice, each value correct, the job finished and counted once per slice.
    const client = new pg.Client({ connectionString: env.DATABASE_URL });
    await client.connect();
    try {
      const rows = await client.query<{ n: string; distinct_slices: string; lowest: string; highest: string; wrong: string }>(
        `SELECT count(*) AS n, count(DISTINCT slice_index) AS distinct_slices, min(slice_index) AS lowest, max(slice_index) AS highest,
                count(*) FILTER (WHERE value IS DISTINCT FROM (slice_index * 3 + 1)::text) AS wrong
         FROM "${env.DATABASE_SCHEMA}".slice_results WHERE job_id = $1`,
        [jobId],
      );
      expect(rows.rows[0]).toEqual({ n: String(total), distinct_slices: String(total), lowest: '0', highest: String(total - 1), wrong: '0' });
      const jobRow = await client.query<{ status: string; computed: number }>(`SELECT status, computed::int AS computed FROM "${env.DATABASE_SCHEMA}".jobs WHERE id = $1`, [jobId]);
      expect(jobRow.rows[0]).toMatchObject({ status: 'finished', computed: total });
    } finally {
      await client.end();
    }

    // Every slice paid exactly once: one bank payment per slice (keyed pay:<job>:<slice>), as much
    // as the scheduler recorded, all of it credited to the worker's earnings; the hold released and the ledger balanced.
    const bankDb = new pg.Client({ connectionString: env.DATABASE_URL });
    await bankDb.connect();
    let paidUnits = 0n;
    try {
      const schedulerSchema = `"${env.DATABASE_SCHEMA}"`;
      const bankSchema = `"${bankEnv.DATABASE_SCHEMA}"`;
      const settled = await waitFor('every payment settled and the hold released', async () => {
        const row = (await bankDb.query<{ unsettled: string; paid: string | null; priced: string }>(
          `SELECT count(*) FILTER (WHERE settled_at IS NULL) AS unsettled, sum(payment)::text AS paid, count(*) FILTER (WHERE payment > 0) AS priced
           FROM ${schedulerSchema}.slice_results WHERE job_id = $1`, [jobId])).rows[0]!;
        const hold = (await bankDb.query<{ status: string }>(`SELECT h.status FROM ${bankSchema}.holds h WHERE h.reference = $1`, [jobId])).rows;
        return row.unsettled === '0' && hold.length > 0 && hold.every((h) => h.status !== 'held') ? row : null;
      }, 30_000, 200);
      expect(settled.priced).toBe(String(total));
      const payments = (await bankDb.query<{ n: string; keys: string; amount: string; lowest: string; highest: string }>(
        `SELECT count(*) AS n, count(DISTINCT key) AS keys, sum(amount)::text AS amount,
                min(split_part(key, ':', 3)::int)::text AS lowest, max(split_part(key, ':', 3)::int)::text AS highest
         FROM ${bankSchema}.payments WHERE key LIKE 'pay:' || $1 || ':%'`, [jobId])).rows[0]!;
      expect(payments).toEqual({ n: String(total), keys: String(total), amount: settled.paid, lowest: '0', highest: String(total - 1) });
      paidUnits = BigInt(payments.amount);
      const balances = await Promise.all(earnings.map(async (address) => ((await (await fetch(`${bank!.url}/accounts/${address}`)).json()) as { balance?: string }).balance ?? '0'));
      expect(balances.reduce((sum, balance) => sum + BigInt(balance), 0n).toString()).toBe(payments.amount);
    } finally {
      await bankDb.end();
    }
    const audit = await bank!.app.get(LedgerService).audit();
    expect(audit).toEqual({ sumOfBalances: '0', unbalancedTransfers: [], driftedAccounts: [], negativeAccounts: [], inconsistentHolds: [] });

    // No claim is left unsettled (claimed in Redis but neither stored nor given back).
    const redis = new Redis(env.REDIS_URL!);
    try {
      await waitFor('the claim journal to be empty', async () => (await redis.zcard(`${env.REDIS_PREFIX}:claims`)) === 0, 15_000, 100);
    } finally {
      redis.disconnect();
    }

    // The outages were answered as such (EUNAVAILABLE), never as the scheduler's own failure.
    const internalFailures = scheduler!.output().split('\n').filter((line) => /socket handler failed|unexpected failure|uncaught/i.test(line));
    expect(internalFailures).toEqual([]);
    expect((await health()).status).toBe(200);
    expect((await health(bank!.url)).status).toBe(200);
    // What the outages cost: result batches answered EUNAVAILABLE, and slices put back because their results were not sent again.
    const log = scheduler!.output().split('\n').map((line) => { try { return String((JSON.parse(line) as { msg?: unknown }).msg ?? ''); } catch { return ''; } });
    const batchesRefused = Math.max(0, ...log.map((msg) => Number(/^(\d+) result batches could not be stored/.exec(msg)?.[1] ?? 0)));
    const notResent = log.reduce((sum, msg) => sum + Number(/^(\d+) slices whose results could not be stored and were not sent again/.exec(msg)?.[1] ?? 0), 0);
    const lostClaims = log.reduce((sum, msg) => sum + Number(/^(\d+) slices claimed but never stored/.exec(msg)?.[1] ?? 0), 0);

    console.log(
      [
        `PostgreSQL chaos: ${total} slices, paid job completed in ${seconds(completedAfterMs)}; every result present once and correct; ` +
          `${total} payments, one per slice, ${paidUnits} units in all, credited to the workers; ledger audit clean, hold released`,
        `  result batches answered EUNAVAILABLE during the outages: at least ${batchesRefused} (the scheduler's last count); ` +
          `slices put back because their results were not sent again within 6 s: ${notResent}; claims swept as lost: ${lostClaims}`,
        ...[clean, crashed].map((r) =>
          `  ${r.fault}: /health degraded ${seconds(r.degradedSeenAfterMs)} after the fault (${JSON.stringify(r.degradedBody)}); ` +
          `outage ${seconds(r.outageMs)}; after PostgreSQL was started: /health ok in ${seconds(r.healthOkAfterStartMs)}, ` +
          `results stored again in ${seconds(r.resultsResumedAfterStartMs)}`),
      ].join('\n'),
    );
  }, 180_000);
});

/** The sandbox global a work function reports progress with. */
declare function progress(value?: number | string): boolean;
