import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUnits, Wallet } from 'ethers';
import pg from 'pg';
import { Redis } from 'ioredis';
import { init } from '@commune/client';
import { startAnswerGate, type AnswerGate } from '../support/answer-gate.js';
import { auditLedgerInProcess, balancesOf, devFeeAccount, expectLedgerBalanced, mintInProcess, type LedgerSummary } from '../support/ledger.js';
import { startOwnPostgres, startOwnRedis, type OwnPostgres, type OwnRedis } from '../support/own-services.js';
import { connectedWorkers, freePort, spawnBank, spawnScheduler, spawnWorker, type RunningProcess } from '../support/processes.js';
import { isolatedEnvironment, waitFor, within } from '../support/services.js';

type Commune = Awaited<ReturnType<typeof init>>;
type Job = ReturnType<Commune['compute']['for']>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

/** Worker processes (one sandbox each: the machine has two cores). */
const WORKERS = 3;
/** The issue killed a worker 20 times under a running paid job. */
const KILLS = 20;
/**
 * Slices of each fault's job and how long each slice takes (ms), so the jobs are still running
 * when their faults land: about 10 s each on three workers, the worker-kill job about 40 s, long
 * enough for its 20 kills spread over it (each victim holds leased slices when it is killed, so a
 * slot's replacement must have started and leased work before that slot is killed again).
 */
const JOBS = {
  workerKills: { slices: 2400, sliceMs: 50 },
  workerStopped: { slices: 2000, sliceMs: 15 },
  schedulerKilled: { slices: 2000, sliceMs: 15 },
  bankKilled: { slices: 2000, sliceMs: 15 },
  bankKilledAfterCommit: { slices: 2000, sliceMs: 15 },
};
/** Each slice's result, checked per slice in the results and in PostgreSQL (the work function computes the same). */
const expected = (i: number) => i * 7 + 3;
/** Offer per slice, DCC: each slice is paid its measured time at 0.1 DCC/s, at least 0.001, never above this. */
const OFFER_DCC = 0.02;
const LEASE_TIMEOUT_MS = 4000;

/**
 * Issue 8, process faults: a worker killed (SIGKILL) 20 times, a worker stopped (SIGSTOP) past its
 * lease and continued, the scheduler killed and started again (one replica), and the bank killed
 * while payments settle and started again (once with a settlement's transaction not yet committed,
 * once after it committed one whose answer the scheduler never got), each under a running paid job
 * of thousands of slices.
 * Real processes (the scheduler, the bank, three `commune-worker`s) on a Redis and a PostgreSQL
 * cluster of the test's own (other ports; the machine's services are not touched). For each
 * fault: every result stored exactly once and right (the SDK's results and result events, the
 * rows in PostgreSQL), every accepted slice paid exactly once (the bank's payments on the job's
 * hold), the payer's debit equal to the workers' credits plus fees, the hold released; and what
 * recovery took is printed.
 */
describe('chaos: processes killed and stopped under running paid jobs (e2e)', () => {
  let redis: OwnRedis | undefined;
  let postgres: OwnPostgres | undefined;
  let env: Record<string, string>;
  let bankEnv: Record<string, string>;
  let bank: (RunningProcess & { url: string }) | undefined;
  /** The scheduler reaches the bank through it (BANK_URL), so a test can hold the bank's answers. */
  let gate: AnswerGate | undefined;
  let scheduler: (RunningProcess & { url: string }) | undefined;
  /** One slot per worker: its earnings account stays, its process is replaced when killed. */
  const slots: Array<{ account: string; process: RunningProcess }> = [];
  const killed: RunningProcess[] = [];
  let schedulerDb: pg.Client | undefined;
  let bankDb: pg.Client | undefined;
  let probe: Redis | undefined;
  let commune: Commune | undefined;
  let owner = '';
  const deployed: Job[] = [];
  /** Jobs of the current test: afterEach makes sure none is still running or paying when the next one reads balances. */
  const current: RunningJob[] = [];
  const home = mkdtempSync(join(tmpdir(), 'commune-process-faults-'));

  /**
   * Each slice takes `sliceMs` without using a CPU (Atomics.wait on a buffer of its own): the two
   * cores stay with the processes under test, and a job lasts about as long however loaded the machine is.
   */
  const work = (i: number, sliceMs: number) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, sliceMs);
    progress(1);
    return i * 7 + 3;
  };

  beforeAll(async () => {
    // Each is kept as soon as it runs, so afterAll stops it even when the other failed to start.
    await Promise.all([startOwnRedis().then((started) => { redis = started; }), startOwnPostgres().then((started) => { postgres = started; })]);
    env = isolatedEnvironment({
      DATABASE_URL: postgres!.url,
      REDIS_URL: redis!.url,
      LEASE_TIMEOUT_MS: String(LEASE_TIMEOUT_MS),
      LEASE_SWEEP_INTERVAL_MS: '250',
      ESCROW_SLICES: '1000',
      SETTLEMENT_INTERVAL_MS: '250',
      SETTLEMENT_BATCH_SIZE: '500',
      MARKET_RATE_DCC_PER_SECOND: '0.1',
      MINIMUM_SLICE_PAYMENT_DCC: '0.001',
      OPERATOR_FEE_DCC: '0.0001',
      BANK_SERVICE_TOKEN: 'process-faults-chaos-service-token-0123456789abcdef',
      NODE_OPTIONS: '--max-old-space-size=192',
    });
    bankEnv = { ...env, DATABASE_SCHEMA: `${env.DATABASE_SCHEMA}_bank`, REDIS_PREFIX: `${env.REDIS_PREFIX}_bank`, NODE_OPTIONS: '' };
    bank = await spawnBank(bankEnv, await freePort());
    gate = await startAnswerGate({ host: '127.0.0.1', port: Number(new URL(bank.url).port) });
    scheduler = await spawnScheduler(schedulerEnv(), await freePort());
    schedulerDb = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
    bankDb = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${bankEnv.DATABASE_SCHEMA}"` });
    await Promise.all([schedulerDb.connect(), bankDb.connect()]);
    probe = new Redis(redis!.url, { maxRetriesPerRequest: 3 });
    commune = await init({ scheduler: scheduler.url, home });
    owner = await (await commune.wallet.get()).getAddress();
    await mintInProcess(bankEnv, await freePort(), owner, parseUnits('1000', 18).toString(), `process-faults-mint-${env.DATABASE_SCHEMA}`);
    for (let i = 0; i < WORKERS; i++) {
      const account = Wallet.createRandom().address;
      slots.push({ account, process: spawnWorker(scheduler.url, 1, workerArgs(account)) });
    }
    await waitFor(`${WORKERS} workers connected`, async () => (await connectedWorkers(scheduler!.url)) === WORKERS, 30_000, 100);
  }, 120_000);

  afterAll(async () => {
    await within(Promise.all(deployed.map((job) => job.cancel().catch(() => undefined))), 10_000, 'cancelling the jobs').catch(() => undefined);
    for (const slot of slots) slot.process?.kill('SIGCONT'); // a stopped worker cannot handle SIGTERM
    await Promise.all([...slots.map((slot) => slot.process?.stop(3000).catch(() => undefined)), ...killed.map((worker) => worker.stop(1000).catch(() => undefined))]);
    await scheduler?.stop().catch(() => undefined);
    await bank?.stop().catch(() => undefined);
    await gate?.close().catch(() => undefined);
    probe?.disconnect();
    await schedulerDb?.end().catch(() => undefined);
    await bankDb?.end().catch(() => undefined);
    await redis?.stop().catch(() => undefined);
    await postgres?.stop().catch((error: unknown) => console.error(`dropping cluster ${postgres!.cluster} failed: ${String(error)}`));
    rmSync(home, { recursive: true, force: true });
  }, 90_000);

  afterEach(async () => {
    // A failed test may leave a worker stopped, and its job running and paying the workers: the
    // worker goes on, the job is cancelled and its payments settled before the next test takes its
    // balances (bounded; nothing to wait for after a pass).
    for (const slot of slots) slot.process.kill('SIGCONT');
    for (const running of current.splice(0)) {
      const status = (await schedulerDb!.query<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [running.jobId])).rows[0]?.status;
      if (status !== 'finished') await within(running.job.cancel(), 10_000, `cancelling ${running.jobId}`).catch(() => undefined);
      await waitFor(`the payments of ${running.jobId} settled and its hold released`, async () =>
        (await unsettled(running.jobId)) === 0 &&
        Number((await bankDb!.query<{ n: string }>("SELECT count(*) AS n FROM holds WHERE reference = $1 AND status = 'held'", [running.jobId])).rows[0]!.n) === 0,
      30_000, 200).catch((error: Error) => console.error(`[process-faults] after the test: ${error.message}`));
    }
  }, 60_000);

  const schedulerEnv = () => ({ ...env, BANK_URL: gate!.url });

  /** A worker's arguments: its earnings account, and JSON logs (heldSlices reads the tasks it fetched). */
  const workerArgs = (account: string) => ['--earnings', account, '--json'];

  const count = async (sql: string, params: unknown[]) => Number((await schedulerDb!.query<{ n: string }>(sql, params)).rows[0]!.n);
  const stored = (jobId: string) => count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1', [jobId]);
  const unsettled = (jobId: string) => count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND settled_at IS NULL', [jobId]);
  const storedAmong = (jobId: string, slices: number[]) => count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND slice_index = ANY($2::bigint[])', [jobId, slices]);

  /** The first result stored at or after `since` (PostgreSQL's clock, the same machine's), ms since the epoch. */
  async function firstResultAfter(jobId: string, since: number): Promise<number | null> {
    const row = (await schedulerDb!.query<{ t: Date | null }>('SELECT min(created_at) AS t FROM slice_results WHERE job_id = $1 AND created_at >= to_timestamp($2 / 1000.0)', [jobId, since])).rows[0];
    return row?.t ? row.t.getTime() : null;
  }

  /**
   * The slices of `jobId` leased to the worker process in `slot` right now, the tasks holding them
   * and the lease owner they are leased to: the tasks it fetched (its log) that the scheduler's
   * Redis still holds (P:task:<taskId> with its slices, documented in lease-scripts.ts).
   */
  async function heldSlices(slot: (typeof slots)[number], jobId: string): Promise<{ slices: number[]; tasks: string[]; leaseOwners: string[] }> {
    const prefix = env.REDIS_PREFIX;
    const fetched = slot.process.output().split('\n').flatMap((line) => {
      if (!line.includes('"task_fetched"')) return [];
      try {
        const entry = JSON.parse(line) as { event?: string; taskId?: string; jobId?: string };
        return entry.event === 'task_fetched' && entry.jobId === jobId && entry.taskId ? [entry.taskId] : [];
      } catch {
        return [];
      }
    });
    const slices: number[] = [];
    const tasks: string[] = [];
    const leaseOwners = new Set<string>();
    // A worker holds about a second of work: its last few dozen tasks cover what it may still hold.
    for (const taskId of fetched.slice(-64)) {
      const [taskJob, owner] = await probe!.hmget(`${prefix}:task:${taskId}`, 'jobId', 'workerId');
      if (taskJob !== jobId || !owner) continue;
      const taskSlices = (await probe!.smembers(`${prefix}:task:${taskId}:slices`)).map(Number);
      if (taskSlices.length === 0) continue;
      tasks.push(taskId);
      leaseOwners.add(owner);
      slices.push(...taskSlices);
    }
    return { slices, tasks, leaseOwners: [...leaseOwners] };
  }

  interface RunningJob {
    job: Job;
    jobId: string;
    slices: number;
    run: Promise<unknown>;
    /** `result` events per slice. */
    seen: Map<number, number>;
    before: Map<string, bigint>;
    deployedAt: number;
    /** When exec() resolved (the client had every result), whatever the test was waiting for then. */
    endedAt: number;
  }

  /** Deploys a paid job and waits until the scheduler accepted it. */
  async function deployPaidJob({ slices, sliceMs }: { slices: number; sliceMs: number }): Promise<RunningJob> {
    const before = await balancesOf(bank!.url, [owner, devFeeAccount, ...slots.map((slot) => slot.account)]);
    const job = commune!.compute.for(0, slices - 1, work, [sliceMs]);
    const seen = new Map<number, number>();
    job.on('result', (event: { sort: number }) => seen.set(event.sort, (seen.get(event.sort) ?? 0) + 1));
    const accepted = new Promise<void>((resolve) => job.once('accepted', () => resolve()));
    const deployedAt = Date.now();
    const run = job.exec(OFFER_DCC);
    run.catch(() => undefined);
    deployed.push(job);
    await within(accepted, 30_000, 'the job to be accepted');
    const running: RunningJob = { job, jobId: job.id as string, slices, run, seen, before, deployedAt, endedAt: 0 };
    run.then(() => { running.endedAt = Date.now(); }, () => undefined);
    current.push(running);
    return running;
  }

  /** exec() resolved, or a failure that says how far the job got and what the processes said last. */
  async function completion(running: RunningJob, ms: number): Promise<unknown[]> {
    try {
      return Array.from((await within(running.run, ms, `the job ${running.jobId} to complete`)) as Iterable<unknown>);
    } catch (error) {
      const tail = (proc: RunningProcess | undefined, lines: number) => (proc?.output() ?? '').split('\n').slice(-lines).join('\n');
      throw new Error(`${(error as Error).message}: ${await stored(running.jobId).catch(() => '?')} of ${running.slices} results stored\n` +
        `scheduler:\n${tail(scheduler, 30)}\nbank:\n${tail(bank, 10)}\nworkers:\n${slots.map((slot) => tail(slot.process, 5)).join('\n')}`);
    }
  }

  /**
   * Every result exactly once and right: exec()'s results, the `result` events (one per slice) and
   * PostgreSQL's rows (one per slice, each value right, the job finished with computed = total);
   * then the job's ledger (expectLedgerBalanced) and no claim left in the journal.
   */
  async function expectJobCorrect(running: RunningJob, results: unknown[]): Promise<LedgerSummary> {
    const { jobId, slices } = running;
    expect(results).toHaveLength(slices);
    expect(results.map((value, i) => (value === expected(i) ? null : i)).filter((i) => i !== null)).toEqual([]);
    expect(running.seen.size).toBe(slices);
    expect([...running.seen].filter(([, times]) => times !== 1)).toEqual([]);
    const rows = (await schedulerDb!.query<{ n: string; distinct_slices: string; lowest: string; highest: string; wrong: string }>(
      `SELECT count(*) AS n, count(DISTINCT slice_index) AS distinct_slices, min(slice_index)::text AS lowest, max(slice_index)::text AS highest,
              count(*) FILTER (WHERE value IS DISTINCT FROM (slice_index * 7 + 3)::text) AS wrong
       FROM slice_results WHERE job_id = $1`, [jobId])).rows[0];
    expect(rows).toEqual({ n: String(slices), distinct_slices: String(slices), lowest: '0', highest: String(slices - 1), wrong: '0' });
    expect(await count("SELECT count(*) AS n FROM jobs WHERE id = $1 AND status = 'finished' AND computed = total AND total = $2", [jobId, slices])).toBe(1);
    const ledger = await expectLedgerBalanced({
      schedulerDb: schedulerDb!, bankDb: bankDb!, bankUrl: bank!.url, jobId, slices, owner,
      payees: slots.map((slot) => slot.account), before: running.before, settleTimeoutMs: 30_000,
    });
    await waitFor('the scheduler to record the hold released', async () => (await count('SELECT count(*) AS n FROM jobs WHERE id = $1 AND hold_released_at IS NOT NULL', [jobId])) === 1, 10_000, 50);
    await waitFor('the claim journal to be empty', async () => (await probe!.zcard(`${env.REDIS_PREFIX}:claims`)) === 0, 15_000, 100);
    return ledger;
  }

  function describeLedger(ledger: LedgerSummary, running: RunningJob): string {
    return `${ledger.payments} payments (one per slice) on hold ${ledger.holdId}, released ${seconds(ledger.releasedAt - running.endedAt)} after the job end; ` +
      `payer debited ${ledger.debited} = credits ${ledger.credited} + fees ${ledger.fees}`;
  }

  it(`recovers from a worker killed with SIGKILL ${KILLS} times under a running paid job`, async () => {
    const running = await deployPaidJob(JOBS.workerKills);
    const { jobId } = running;
    await waitFor('the first results', async () => (await stored(jobId)) >= 100, 30_000, 50);
    /** Per kill: the slices the victim held, and how long until every one of them was stored (or what went wrong). */
    const kills: Array<{ held: number; storedAtKill: number; recovered: Promise<number | Error> }> = [];
    let firstKillAt = 0;
    let lastKillAt = 0;
    for (let k = 0; k < KILLS; k++) {
      const slot = slots[k % slots.length]!;
      // The kills are spread over the job: kill k + 1 once (k + 1) / (KILLS + 2) of it is stored.
      const share = Math.ceil(((k + 1) * running.slices) / (KILLS + 2));
      await waitFor(`${share} results stored before kill ${k + 1}`, async () => (await stored(jobId)) >= share, 60_000, 50);
      // The victim is at work: it holds leased slices of the job (its replacement from the last round has connected and leased).
      const { slices: held } = await waitFor(`the worker in slot ${k % slots.length} to hold leased slices before kill ${k + 1}`, async () => {
        const holding = await heldSlices(slot, jobId);
        return holding.slices.length > 0 ? holding : null;
      }, 20_000, 25).catch(async (error: Error) => {
        throw new Error(`${error.message} (${await stored(jobId)} of ${running.slices} results stored, ${await connectedWorkers(scheduler!.url)} workers connected)\n` +
          `its log:\n${slot.process.output().split('\n').slice(-8).join('\n')}`);
      });
      const storedNow = await stored(jobId);
      if (storedNow >= running.slices) throw new Error(`the job ended before kill ${k + 1}: make it longer (JOBS.workerKills)`);
      const victim = slot.process;
      const killedAt = Date.now();
      lastKillAt = killedAt;
      firstKillAt ||= killedAt;
      victim.kill('SIGKILL');
      await within(victim.exited, 5000, 'the killed worker to exit');
      killed.push(victim);
      slot.process = spawnWorker(scheduler!.url, 1, workerArgs(slot.account));
      const recovered = waitFor(`the ${held.length} slices held by killed worker ${k + 1} stored`, async () => (await storedAmong(jobId, held)) === held.length, 30_000, 50)
        .then(() => Date.now() - killedAt, (error: Error) => error);
      kills.push({ held: held.length, storedAtKill: storedNow, recovered });
    }
    const lastKillDoneAt = Date.now();
    const results = await completion(running, 120_000);
    const { endedAt } = running;
    const recoveries = await Promise.all(kills.map((kill) => kill.recovered));
    const failed = recoveries.filter((recovery): recovery is Error => recovery instanceof Error);
    expect(failed.map((error) => error.message)).toEqual([]);
    const ledger = await expectJobCorrect(running, results);
    for (const slot of slots) expect(slot.process.child.exitCode).toBeNull();
    const times = (recoveries as number[]).slice().sort((a, b) => a - b);
    const heldTotal = kills.reduce((sum, kill) => sum + kill.held, 0);
    console.log(`[process-faults] worker SIGKILL x${KILLS} (${running.slices} slices, ${WORKERS} workers, each killed one restarted with the same earnings account): ` +
      `${KILLS} kills in ${seconds(lastKillAt - firstKillAt)}, with ${kills[0]!.storedAtKill} to ${kills.at(-1)!.storedAtKill} results stored; ` +
      `${heldTotal} leased slices lost with the killed workers (${kills.map((kill) => kill.held).join(', ')}); ` +
      `kill -> every slice the victim held stored: median ${times[Math.floor(times.length / 2)]} ms, max ${times.at(-1)} ms (min ${times[0]} ms); ` +
      `last kill -> job end ${seconds(endedAt - lastKillDoneAt)}, job ran ${seconds(endedAt - running.deployedAt)}; ` +
      `checked: ${running.slices} results once and right, ${describeLedger(ledger, running)}`);
  }, 180_000);

  it('does not store or pay twice the late results of a worker stopped (SIGSTOP) past its lease, whose slices others recomputed', async () => {
    const running = await deployPaidJob(JOBS.workerStopped);
    const { jobId } = running;
    const slot = slots[0]!;
    const victim = slot.process;
    await waitFor('a quarter of the job stored', async () => (await stored(jobId)) >= running.slices / 4, 60_000, 50);
    await waitFor('the worker to hold leased slices', async () => (await heldSlices(slot, jobId)).slices.length > 0, 20_000, 25);
    const storedAtStop = await stored(jobId);
    const stoppedAt = Date.now();
    victim.kill('SIGSTOP');
    // Results already on the wire when it stopped are taken meanwhile; what it holds then, it cannot deliver in time.
    await sleep(300);
    const held = await heldSlices(slot, jobId);
    expect(held.slices.length).toBeGreaterThan(0);
    expect(held.leaseOwners).toHaveLength(1);
    const expiredAt = await waitFor('the stopped worker\'s leases to expire and be swept', async () => {
      for (const taskId of held.tasks) if ((await probe!.exists(`${env.REDIS_PREFIX}:task:${taskId}`)) === 1) return null;
      return Date.now();
    }, LEASE_TIMEOUT_MS + 15_000, 50);
    const recomputedAt = await waitFor(`the ${held.slices.length} slices it held stored by other workers`, async () =>
      ((await storedAmong(jobId, held.slices)) === held.slices.length ? Date.now() : null), 30_000, 50);
    // Nothing of them came from the stopped worker: it is still stopped.
    expect(await count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND slice_index = ANY($2::bigint[]) AND worker_id = $3', [jobId, held.slices, held.leaseOwners[0]])).toBe(0);
    // Its log from now on: what the scheduler answered the results it computed before and after the stop.
    let resumedLog = '';
    const keep = (chunk: Buffer) => { resumedLog += chunk.toString(); };
    victim.child.stdout!.on('data', keep);
    const resumedAt = Date.now();
    victim.kill('SIGCONT');
    const results = await completion(running, 90_000);
    const { endedAt } = running;
    const tasksFinished = () => resumedLog.split('\n').flatMap((line) => {
      try {
        const entry = JSON.parse(line) as { event?: string; refused?: number; accepted?: number; msg?: string };
        return entry.event === 'task_finished' ? [entry] : [];
      } catch {
        return [];
      }
    });
    // The late results reached the scheduler (the connection outlived the stop) and were refused as no longer leased.
    const refusedLate = await waitFor('the resumed worker to report its late results refused', () => {
      const refused = tasksFinished().reduce((sum, entry) => sum + (entry.refused ?? 0), 0);
      return refused > 0 ? refused : null;
    }, 15_000, 50);
    victim.child.stdout!.off('data', keep);
    expect(tasksFinished().filter((entry) => (entry.refused ?? 0) > 0).every((entry) => /ENOTLEASED/.test(entry.msg ?? '') && !/EDUPLICATE/.test(entry.msg ?? ''))).toBe(true);
    expect(victim.child.exitCode).toBeNull();
    const ledger = await expectJobCorrect(running, results);
    // Its slices were recomputed and paid to whoever stored them, once each.
    const paidHeld = (await schedulerDb!.query<{ n: string; distinct_slices: string }>(
      'SELECT count(*) AS n, count(DISTINCT slice_index) AS distinct_slices FROM slice_results WHERE job_id = $1 AND slice_index = ANY($2::bigint[]) AND payment IS NOT NULL AND settled_at IS NOT NULL',
      [jobId, held.slices])).rows[0]!;
    expect(paidHeld).toEqual({ n: String(held.slices.length), distinct_slices: String(held.slices.length) });
    console.log(`[process-faults] worker SIGSTOP past its lease (${running.slices} slices, lease ${LEASE_TIMEOUT_MS} ms): stopped holding ${held.slices.length} leased slices in ${held.tasks.length} tasks ` +
      `with ${storedAtStop} results stored; stop -> its leases swept ${expiredAt - stoppedAt} ms, -> every slice it held stored by others ${recomputedAt - stoppedAt} ms; ` +
      `SIGCONT after ${resumedAt - stoppedAt} ms: ${refusedLate} late results refused (ENOTLEASED), none stored or paid; SIGCONT -> job end ${seconds(endedAt - resumedAt)}; ` +
      `checked: ${running.slices} results once and right, ${describeLedger(ledger, running)}`);
  }, 150_000);

  it('completes the job when the scheduler is killed (SIGKILL) and started again', async () => {
    const running = await deployPaidJob(JOBS.schedulerKilled);
    const { jobId, job } = running;
    const links: string[] = [];
    job.on('disconnect', () => links.push('disconnect'));
    job.on('connect', () => links.push('connect'));
    await waitFor('30% of the job stored', async () => (await stored(jobId)) >= running.slices * 0.3, 60_000, 50);
    const storedAtKill = await stored(jobId);
    const port = Number(new URL(scheduler!.url).port);
    const killedAt = Date.now();
    scheduler!.kill('SIGKILL');
    await within(scheduler!.exited, 5000, 'the killed scheduler to exit');
    const dead = scheduler!;
    scheduler = await spawnScheduler(schedulerEnv(), port);
    const upAt = Date.now();
    expect(dead.child.signalCode).toBe('SIGKILL');
    const workersBackAt = await waitFor(`${WORKERS} workers back on the restarted scheduler`, async () => ((await connectedWorkers(scheduler!.url)) === WORKERS ? Date.now() : null), 30_000, 50);
    const nextResultAt = await waitFor('a result stored after the restart', () => firstResultAfter(jobId, upAt), 30_000, 50);
    const results = await completion(running, 90_000);
    const { endedAt } = running;
    expect(links).toEqual(['disconnect', 'connect']);
    const ledger = await expectJobCorrect(running, results);
    console.log(`[process-faults] scheduler SIGKILL, restarted (${running.slices} slices, one replica): killed with ${storedAtKill} results stored; ` +
      `kill -> /health again ${seconds(upAt - killedAt)}, -> ${WORKERS} workers reconnected ${seconds(workersBackAt - killedAt)}, ` +
      `-> next result stored ${seconds(nextResultAt - killedAt)}, -> job end ${seconds(endedAt - killedAt)}; the SDK saw ${links.join(', ')}; ` +
      `checked: ${running.slices} results once and right, ${describeLedger(ledger, running)}`);
  }, 150_000);

  it('pays every slice once when the bank is killed (SIGKILL) with a settlement in flight and started again', async () => {
    const running = await deployPaidJob(JOBS.bankKilled);
    const { jobId } = running;
    await waitFor('30% of the job stored with payments waiting to be settled', async () =>
      (await stored(jobId)) >= running.slices * 0.3 && (await unsettled(jobId)) > 0, 60_000, 20);
    // The kill lands while a settlement is in the bank: a lock of the test's own on the bank's
    // payments table holds the next POST /holds/:id/payments inside its transaction (after the
    // hold and the accounts are locked, at the insert of the payments), and the bank is killed there.
    const lock = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${bankEnv.DATABASE_SCHEMA}"` });
    await lock.connect();
    let settlementInFlight: { pid: number; query: string } | undefined;
    const storedAtKill = await stored(jobId);
    const unsettledAtKill = await unsettled(jobId);
    const paymentsAtKill = Number((await bankDb!.query<{ n: string }>("SELECT count(*) AS n FROM payments WHERE key LIKE 'pay:' || $1 || ':%'", [jobId])).rows[0]!.n);
    const port = Number(new URL(bank!.url).port);
    const schedulerLogBefore = scheduler!.output().length;
    const dead = bank!;
    let killedAt = 0;
    try {
      await lock.query('BEGIN');
      await lock.query('LOCK TABLE payments IN EXCLUSIVE MODE');
      const lockPid = (await lock.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      settlementInFlight = await waitFor('a settlement to wait in the bank', async () =>
        (await schedulerDb!.query<{ pid: number; query: string }>("SELECT pid, query FROM pg_stat_activity WHERE backend_type = 'client backend' AND $1 = ANY(pg_blocking_pids(pid))", [lockPid])).rows[0], 15_000, 20);
      expect(settlementInFlight.query).toMatch(/INSERT INTO payments/);
      killedAt = Date.now();
      dead.kill('SIGKILL');
      await within(dead.exited, 5000, 'the killed bank to exit');
    } finally {
      await lock.query('ROLLBACK').catch(() => undefined);
      await lock.end().catch(() => undefined);
    }
    // The killed bank's transaction never commits: its connection is gone.
    await waitFor('the killed bank\'s transaction to end', async () =>
      (await schedulerDb!.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [settlementInFlight!.pid])).rowCount === 0, 10_000, 20);
    // Down for a moment, as under a supervisor that restarts a child after 1 s (pnpm start).
    await sleep(Math.max(0, killedAt + 1000 - Date.now()));
    bank = await spawnBank(bankEnv, port);
    const upAt = Date.now();
    const storedAtUp = await stored(jobId);
    expect(dead.child.signalCode).toBe('SIGKILL');
    const settledAt = await waitFor('a payment settled after the restart', async () => {
      const row = (await schedulerDb!.query<{ t: Date | null }>('SELECT min(settled_at) AS t FROM slice_results WHERE job_id = $1 AND settled_at >= to_timestamp($2 / 1000.0)', [jobId, upAt])).rows[0];
      return row?.t ? row.t.getTime() : null;
    }, 30_000, 50);
    const results = await completion(running, 90_000);
    const { endedAt } = running;
    const ledger = await expectJobCorrect(running, results);
    const failedSettlements = (scheduler!.output().slice(schedulerLogBefore).match(/settling \d+ payments of [^ ]+ failed/g) ?? []).length;
    console.log(`[process-faults] bank SIGKILL with a settlement in flight (its transaction waiting at the payments insert), restarted after 1 s (${running.slices} slices): killed with ${storedAtKill} results stored, ` +
      `${unsettledAtKill} payments unsettled, ${paymentsAtKill} posted; ${storedAtUp - storedAtKill} results stored while it was down, ` +
      `${failedSettlements} settlement runs failed meanwhile; ` +
      `kill -> bank /health again ${seconds(upAt - killedAt)}, -> next payment settled ${seconds(settledAt - killedAt)}, -> job end ${seconds(endedAt - killedAt)}, ` +
      `-> last payment settled ${seconds(ledger.lastSettledAt - killedAt)}, -> hold released ${seconds(ledger.releasedAt - killedAt)}; checked: ${running.slices} results once and right, ${describeLedger(ledger, running)}`);
  }, 150_000);

  it('pays every slice once when the bank is killed (SIGKILL) after committing a settlement whose answer never reached the scheduler', async () => {
    const running = await deployPaidJob(JOBS.bankKilledAfterCommit);
    const { jobId } = running;
    await waitFor('30% of the job stored with payments waiting to be settled', async () =>
      (await stored(jobId)) >= running.slices * 0.3 && (await unsettled(jobId)) > 0, 60_000, 20);
    const storedAtHold = await stored(jobId);
    const port = Number(new URL(bank!.url).port);
    const dead = bank!;
    // The bank's answers are held from now on; once it has answered a settlement (committed it), it is killed.
    const held = await gate!.holdUntilAnswered(/^POST \/holds\/[^/]+\/payments /, /^HTTP\/1\.1 200 /, 15_000).catch((error: unknown) => {
      gate!.release();
      throw error;
    });
    const killedAt = Date.now();
    dead.kill('SIGKILL');
    await within(dead.exited, 5000, 'the killed bank to exit');
    gate!.release();
    // Paid at the bank, not known as settled by the scheduler: its next settlement posts them again.
    const paidAtBank = Number((await bankDb!.query<{ n: string }>("SELECT count(*) AS n FROM payments WHERE key LIKE 'pay:' || $1 || ':%'", [jobId])).rows[0]!.n);
    const settledInScheduler = await count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND settled_at IS NOT NULL', [jobId]);
    expect(paidAtBank).toBeGreaterThan(settledInScheduler);
    const schedulerLogBefore = scheduler!.output().length;
    await sleep(Math.max(0, killedAt + 1000 - Date.now()));
    bank = await spawnBank(bankEnv, port);
    const upAt = Date.now();
    const settledAt = await waitFor('a payment settled after the restart', async () => {
      const row = (await schedulerDb!.query<{ t: Date | null }>('SELECT min(settled_at) AS t FROM slice_results WHERE job_id = $1 AND settled_at >= to_timestamp($2 / 1000.0)', [jobId, upAt])).rows[0];
      return row?.t ? row.t.getTime() : null;
    }, 30_000, 50);
    const results = await completion(running, 90_000);
    const { endedAt } = running;
    const ledger = await expectJobCorrect(running, results);
    const failedSettlements = (scheduler!.output().slice(schedulerLogBefore).match(/settling \d+ payments of [^ ]+ failed/g) ?? []).length;
    console.log(`[process-faults] bank SIGKILL after committing a settlement whose answer was held from the scheduler, restarted after 1 s (${running.slices} slices): ` +
      `${storedAtHold} results stored when its answers were held; killed after answering ${held.split(' ').slice(0, 2).join(' ')}: ` +
      `${paidAtBank - settledInScheduler} payments paid at the bank but not known as settled by the scheduler; ${failedSettlements} settlement runs failed meanwhile; ` +
      `kill -> bank /health again ${seconds(upAt - killedAt)}, -> next payment settled ${seconds(settledAt - killedAt)}, -> job end ${seconds(endedAt - killedAt)}, ` +
      `-> last payment settled ${seconds(ledger.lastSettledAt - killedAt)}, -> hold released ${seconds(ledger.releasedAt - killedAt)}; ` +
      `checked: ${running.slices} results once and right, ${describeLedger(ledger, running)}`);
  }, 150_000);

  it('leaves the whole ledger balanced after every fault, with no hold open', async () => {
    expect(await auditLedgerInProcess(bankEnv, await freePort())).toEqual({ sumOfBalances: '0', unbalancedTransfers: [], driftedAccounts: [], negativeAccounts: [], inconsistentHolds: [] });
    const holds = (await bankDb!.query<{ n: string; open: string }>("SELECT count(*) AS n, count(*) FILTER (WHERE status = 'held') AS open FROM holds")).rows[0]!;
    expect(Number(holds.open)).toBe(0);
    expect(Number(holds.n)).toBe(Object.keys(JOBS).length);
    console.log(`[process-faults] the bank's audit of its whole ledger is clean; ${holds.n} holds (one per job), none open`);
  }, 60_000);
});

/** The sandbox global a work function reports progress with. */
declare function progress(value?: number | string): boolean;
