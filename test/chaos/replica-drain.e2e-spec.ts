import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { init } from '@commune/client';
import { connectedWorkers, freePort, spawnScheduler, spawnWorker, type RunningProcess } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../support/services.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

type Job = ReturnType<Awaited<ReturnType<typeof init>>['compute']['for']>;
type Replica = RunningProcess & { url: string };

/** Slices of each job (each busy-waits 6 ms, see `work`): the job is still running when the fault lands. */
const SLICES = 2000;
/** The fault lands once this share of the results is in. */
const FAULT_AT = 0.2;
const DRAIN_MS = 6000;
const NOT_READY_MS = 500;

/** `promise`, or a rejection naming `what` after `ms` (the timer is cleared either way). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Issue 8: a scheduler replica shuts down gracefully (SIGTERM) or is killed (SIGKILL) under a
 * running job of 2,000 slices computed by two real `commune-worker`s (two sandboxes each). Two real
 * replicas share PostgreSQL and Redis (the test's own schema and key prefix). Either a round-robin
 * TCP load balancer (test/support/tcp-proxy.ts, polling /health as a readiness probe does) stands
 * in front of them and the workers and the SDK connect through it, or the workers and the SDK are
 * given both replicas' URLs.
 * - SIGTERM: the replica answers /health with 503 `draining`, hands its workers and clients to
 *   the other replica and exits. No slice is put back or computed again because of the drain: the
 *   lease journal holds every slice exactly once (no slice was leased twice) and the workers
 *   computed exactly 2,000 slices between them; every result is stored once and right.
 * - SIGKILL (behind the load balancer): the job completes with every result once and right.
 * Each case prints how long the workers took to be back at work on the other replica.
 */
describe('a scheduler replica drains or dies under a running job (chaos, e2e)', () => {
  const env = isolatedEnvironment({
    LOG_LEVEL: 'info',
    LEASE_TIMEOUT_MS: '20000',
    LEASE_SWEEP_INTERVAL_MS: '500',
    SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
    SHUTDOWN_NOT_READY_MS: String(NOT_READY_MS),
  });
  const home = mkdtempSync(join(tmpdir(), 'commune-drain-'));
  const db = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
  let dbOpen = false;
  /** What each case started; stopped after it whatever happened. */
  let running: { replicas: Replica[]; workers: RunningProcess[]; proxy?: TcpProxy } = { replicas: [], workers: [] };

  beforeAll(async () => {
    // The first replica migrates the schema; the database client needs it to exist.
    const first = await spawnScheduler(env, await freePort());
    await first.stop();
    await db.connect();
    dbOpen = true;
  }, 60_000);

  afterEach(async () => {
    await Promise.all(running.workers.map((worker) => worker.stop(10_000).catch(() => undefined)));
    await Promise.all(running.replicas.map((replica) => replica.stop(10_000).catch(() => undefined)));
    await running.proxy?.close().catch(() => undefined);
    running = { replicas: [], workers: [] };
  }, 40_000);

  afterAll(async () => {
    if (dbOpen) await db.end().catch(() => undefined);
    await dropIsolated(env);
    rmSync(home, { recursive: true, force: true });
  }, 30_000);

  /** Each slice busy-waits 6 ms so the job is still running when the fault lands. */
  const work = (i: number) => {
    const until = Date.now() + 6;
    while (Date.now() < until) progress(0.5);
    progress(1);
    return i * 3 + 1;
  };

  async function startReplicas(): Promise<[Replica, Replica]> {
    const [a, b] = await Promise.all([spawnScheduler(env, await freePort()), spawnScheduler(env, await freePort())]);
    running.replicas.push(a, b);
    return [a, b];
  }

  /** Starts a worker and waits until `on` counts `expected` workers (so the load balancer's round robin is known). */
  async function startWorker(schedulerArg: string, on: Replica, expected: number): Promise<RunningProcess> {
    const worker = spawnWorker(schedulerArg, 2);
    running.workers.push(worker);
    await waitFor(`worker ${running.workers.length} connected to ${on.url}`, async () => (await connectedWorkers(on.url)) === expected, 20_000, 50);
    return worker;
  }

  function countResults(job: Job): Map<number, number> {
    const seen = new Map<number, number>();
    job.on('result', (event: { sort: number }) => seen.set(event.sort, (seen.get(event.sort) ?? 0) + 1));
    return seen;
  }

  /** What PostgreSQL holds for the job: result rows, distinct slices, right values; slices leased per the lease journal; failures. */
  async function stored(jobId: string) {
    const results = await db.query<{ rows: string; distinct: string; right: string }>(
      `SELECT count(*) AS rows, count(DISTINCT slice_index) AS distinct, count(*) FILTER (WHERE value = (slice_index * 3 + 1)::text) AS right FROM slice_results WHERE job_id = $1`,
      [jobId],
    );
    const leases = await db.query<{ leased: string | null }>(`SELECT sum(last_slice - first_slice + 1) AS leased FROM slice_leases WHERE job_id = $1`, [jobId]);
    const failures = await db.query<{ count: string }>(`SELECT count(*) FROM slice_failures WHERE job_id = $1`, [jobId]);
    return {
      rows: Number(results.rows[0].rows),
      distinct: Number(results.rows[0].distinct),
      right: Number(results.rows[0].right),
      leased: Number(leases.rows[0].leased ?? 0),
      failures: Number(failures.rows[0].count),
    };
  }

  function expectEveryResultOnce(results: ArrayLike<unknown>, seen: Map<number, number>): void {
    const values = Array.from(results);
    expect(values).toHaveLength(SLICES);
    expect(values.filter((value, i) => value !== i * 3 + 1)).toEqual([]);
    expect(seen.size).toBe(SLICES);
    expect([...seen.values()].filter((count) => count !== 1)).toEqual([]);
  }

  /**
   * Stops the workers and reads their final summary lines ("done: N slices (E errors) in T tasks;
   * A accepted, R refused, X returned"): slices each computed, and results refused (sent again
   * although the scheduler had stored them, their acknowledgement lost with the connection or
   * late: refused as no longer leased).
   */
  async function workerTotals(): Promise<{ computed: number[]; refused: number }> {
    await Promise.all(running.workers.map((worker) => worker.stop(10_000)));
    const totals = running.workers.map((worker) => {
      const match = /done: (\d+) slices .*; (\d+) accepted, (\d+) refused/.exec(worker.output());
      if (!match) throw new Error(`no final summary in the worker's output:\n${worker.output().slice(-3000)}`);
      return { computed: Number(match[1]), refused: Number(match[3]) };
    });
    return { computed: totals.map((total) => total.computed), refused: totals.reduce((sum, total) => sum + total.refused, 0) };
  }

  /** The gaps each worker reported between losing its scheduler and connecting to another ("after N ms without a scheduler"). */
  const reportedGaps = (worker: RunningProcess) => [...worker.output().matchAll(/after (\d+) ms without a scheduler/g)].map((match) => Number(match[1]));

  /** Polls /health of a draining replica: it must say 503 `draining` (readiness) before it exits. */
  async function sawDraining(replica: Replica): Promise<boolean> {
    return waitFor(`${replica.url}/health to answer 503 draining`, async () => {
      const answer = await fetch(`${replica.url}/health`);
      const body = (await answer.json()) as { status?: string };
      return answer.status === 503 && body.status === 'draining';
    }, NOT_READY_MS + 2_000, 20);
  }

  async function drainCase(how: 'proxy' | 'urls'): Promise<void> {
    const [a, b] = await startReplicas();
    let schedulerArg: string;
    let clientUrls: string[];
    if (how === 'proxy') {
      const proxy = await startTcpProxy({ backends: [a.url, b.url], healthPath: '/health', healthIntervalMs: 100 });
      running.proxy = proxy;
      schedulerArg = proxy.url;
      clientUrls = [proxy.url];
      // Round robin: the first worker lands on A, the second on B.
      await startWorker(schedulerArg, a, 1);
      await startWorker(schedulerArg, b, 1);
    } else {
      // Both workers and the SDK start on A (the first URL) and must all move to B.
      schedulerArg = `${a.url},${b.url}`;
      clientUrls = [a.url, b.url];
      await startWorker(schedulerArg, a, 1);
      await startWorker(schedulerArg, a, 2);
    }
    const onA = await connectedWorkers(a.url);

    const { compute } = await init({ scheduler: clientUrls.length === 1 ? clientUrls[0]! : clientUrls, home });
    const job = compute.for(0, SLICES - 1, work);
    const seen = countResults(job);
    const exec = job.exec();
    exec.catch(() => undefined);
    await waitFor(`${FAULT_AT * 100}% of the results`, () => seen.size >= SLICES * FAULT_AT, 60_000, 10);
    const before = seen.size;

    const termAt = Date.now();
    a.kill('SIGTERM');
    expect(await sawDraining(a)).toBe(true);
    await waitFor('both workers at work on replica B', async () => (await connectedWorkers(b.url)) === 2, DRAIN_MS + 10_000, 20);
    const workersBackMs = Date.now() - termAt;
    const exitCode = await within(a.exited, DRAIN_MS + 5_000, 'replica A exiting after SIGTERM');
    const exitedMs = Date.now() - termAt;
    const results = await within(exec, 90_000, 'exec() after the drain');
    const doneMs = Date.now() - termAt;
    const jobId = job.id as string;

    expectEveryResultOnce(results, seen);
    const db = await stored(jobId);
    // Nothing was put back or leased again because of the drain; nothing failed.
    expect(db).toEqual({ rows: SLICES, distinct: SLICES, right: SLICES, leased: SLICES, failures: 0 });
    const { computed, refused } = await workerTotals();
    expect(computed.reduce((sum, n) => sum + n, 0)).toBe(SLICES);
    expect(before).toBeLessThan(SLICES);
    // A exited of its SIGTERM after saying what it drained, within its drain bound.
    expect(exitCode).toBeNull();
    expect(a.child.signalCode).toBe('SIGTERM');
    const drainLine = /drained in (\d+) ms: (\d+) workers and (\d+) clients/.exec(a.output());
    expect(drainLine).not.toBeNull();
    expect(Number(drainLine![2])).toBe(onA);
    expect(a.output()).toMatch(/stay leased to it until it reconnects elsewhere/);
    expect(exitedMs).toBeLessThan(DRAIN_MS + 5_000);
    const gaps = running.workers.map(reportedGaps);
    process.stdout.write(
      `[chaos replica-drain, ${how === 'proxy' ? 'through a load balancer' : 'workers and SDK given both URLs'}] SIGTERM to replica A after ${before}/${SLICES} results ` +
        `(${onA} of 2 workers on A): A drained in ${drainLine![1]} ms (${drainLine![2]} workers, ${drainLine![3]} clients handed over) and exited ${exitedMs} ms after the signal; ` +
        `both workers at work on B ${workersBackMs} ms after the signal (A not ready for the first ${NOT_READY_MS} ms); ` +
        `worker-reported gaps without a scheduler: ${JSON.stringify(gaps)} ms; exec() resolved ${doneMs} ms after the signal. ` +
        `Lease journal: ${db.leased} slices leased for ${SLICES} (none twice); workers computed ${computed.join(' + ')} = ${SLICES}; ` +
        `${refused} results sent twice (an acknowledgement lost with the handover or late under load) refused as already taken; ${SLICES} results each once and right\n`,
    );
  }

  it('SIGTERM behind a load balancer: the replica drains, its workers and client move to the other, no leased slice is put back or computed again', async () => {
    await drainCase('proxy');
  }, 150_000);

  it('SIGTERM with workers and SDK given both URLs: everything on the replica moves to the next URL, no leased slice is put back or computed again', async () => {
    await drainCase('urls');
  }, 150_000);

  it('SIGKILL behind a load balancer: the job completes with every result once and right', async () => {
    const [a, b] = await startReplicas();
    const proxy = await startTcpProxy({ backends: [a.url, b.url], healthPath: '/health', healthIntervalMs: 100 });
    running.proxy = proxy;
    await startWorker(proxy.url, a, 1);
    await startWorker(proxy.url, b, 1);

    const { compute } = await init({ scheduler: proxy.url, home });
    const job = compute.for(0, SLICES - 1, work);
    const seen = countResults(job);
    const exec = job.exec();
    exec.catch(() => undefined);
    await waitFor(`${FAULT_AT * 100}% of the results`, () => seen.size >= SLICES * FAULT_AT, 60_000, 10);
    const before = seen.size;

    const killedAt = Date.now();
    a.kill('SIGKILL');
    await a.exited;
    await waitFor('both workers at work on replica B', async () => (await connectedWorkers(b.url)) === 2, 30_000, 20);
    const workersBackMs = Date.now() - killedAt;
    const results = await within(exec, 90_000, 'exec() after the kill');
    const doneMs = Date.now() - killedAt;

    expectEveryResultOnce(results, seen);
    const db = await stored(job.id as string);
    expect({ rows: db.rows, distinct: db.distinct, right: db.right, failures: db.failures }).toEqual({ rows: SLICES, distinct: SLICES, right: SLICES, failures: 0 });
    expect(before).toBeLessThan(SLICES);
    const { computed } = await workerTotals();
    const gaps = running.workers.map(reportedGaps);
    process.stdout.write(
      `[chaos replica-drain, SIGKILL behind a load balancer] replica A killed after ${before}/${SLICES} results: both workers at work on B ${workersBackMs} ms after the kill; ` +
        `worker-reported gaps without a scheduler: ${JSON.stringify(gaps)} ms; exec() resolved ${doneMs} ms after the kill; ` +
        `lease journal: ${db.leased} slices leased for ${SLICES} (${db.leased - SLICES} leased again); workers computed ${computed.join(' + ')}; ${SLICES} results each once and right\n`,
    );
  }, 150_000);
});

/** The work function's progress(), defined in the sandbox. */
declare function progress(value?: number | string): boolean;
