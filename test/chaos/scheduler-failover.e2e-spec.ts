import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { init } from '@commune/client';
import { ErrorCode } from '@commune/protocol';
import { connectedWorkers, spawnScheduler, startTwoReplicaCommune, type RunningProcess, type TwoReplicaCommune } from '../support/processes.js';
import { isolatedEnvironment, waitFor } from '../support/services.js';

type Job = ReturnType<Awaited<ReturnType<typeof init>>['compute']['for']>;

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
 * Issue 8, the SDK side of "a scheduler dies": two real scheduler replicas sharing PostgreSQL and
 * Redis (the test's own schema and key prefix), two real `commune-worker`s on replica B, and the
 * SDK in this process given both URLs, so it is on replica A.
 * 1. Replica A is killed (SIGKILL) under a running job: the SDK moves to B by itself, follows the
 *    job there, fetches what was accepted while it was away, and exec() resolves with every
 *    result exactly once and right.
 * 2. With A dead, a new job deploys through B (A refuses the connection); then B is killed too:
 *    exec() with unreachableTimeoutMs rejects with EUNAVAILABLE and the job emits `disconnect` and
 *    `EUNAVAILABLE`. The job was left running: once B is back, compute.resume(id).exec() gets
 *    every result.
 */
describe('the scheduler replica a client is on dies (chaos, e2e)', () => {
  const SLICES = 1500;
  const env = isolatedEnvironment({ LEASE_TIMEOUT_MS: '5000', LEASE_SWEEP_INTERVAL_MS: '500' });
  const home = mkdtempSync(join(tmpdir(), 'commune-failover-'));
  let commune: TwoReplicaCommune | undefined;
  let restartedB: (RunningProcess & { url: string }) | undefined;
  const db = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
  let dbOpen = false;

  beforeAll(async () => {
    commune = await startTwoReplicaCommune(env);
    await db.connect();
    dbOpen = true;
  }, 60_000);

  afterAll(async () => {
    if (dbOpen) await db.end().catch(() => undefined);
    await restartedB?.stop().catch(() => undefined);
    await commune?.stop().catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  }, 30_000);

  /** Each slice busy-waits a few ms so the job is still running when a replica dies. */
  const work = (i: number) => {
    const until = Date.now() + 4;
    while (Date.now() < until) progress(0.5);
    progress(1);
    return i * 3;
  };

  /** Counts the job's `result` events per slice. */
  function countResults(job: Job): Map<number, number> {
    const seen = new Map<number, number>();
    job.on('result', (event: { sort: number }) => seen.set(event.sort, (seen.get(event.sort) ?? 0) + 1));
    return seen;
  }

  async function stored(jobId: string): Promise<{ rows: number; distinct: number; right: number }> {
    const { rows } = await db.query<{ rows: string; distinct: string; right: string }>(
      `SELECT count(*) AS rows, count(DISTINCT slice_index) AS distinct, count(*) FILTER (WHERE value = (slice_index * 3)::text) AS right FROM slice_results WHERE job_id = $1`,
      [jobId],
    );
    return { rows: Number(rows[0].rows), distinct: Number(rows[0].distinct), right: Number(rows[0].right) };
  }

  function expectEveryResultOnce(results: ArrayLike<unknown>, seen: Map<number, number>): void {
    const values = Array.from(results);
    expect(values).toHaveLength(SLICES);
    const wrong = values.filter((value, i) => value !== i * 3).length;
    expect(wrong).toBe(0);
    expect(seen.size).toBe(SLICES);
    expect([...seen.values()].filter((count) => count !== 1)).toEqual([]);
  }

  it('moves to the other replica when the one it is on is killed: exec() resolves with every result once', async () => {
    const { replicaA, replicaB } = commune!;
    const { compute } = await init({ scheduler: [replicaA.url, replicaB.url], home });
    const job = compute.for(0, SLICES - 1, work);
    const seen = countResults(job);
    const disconnects: Array<{ scheduler: string; reason: string; at: number }> = [];
    const connects: Array<{ scheduler: string; downtimeMs: number; at: number }> = [];
    job.on('disconnect', (event: { scheduler: string; reason: string }) => disconnects.push({ ...event, at: Date.now() }));
    job.on('connect', (event: { scheduler: string; downtimeMs: number }) => connects.push({ ...event, at: Date.now() }));
    const running = job.exec();
    running.catch(() => undefined);

    await waitFor('a tenth of the results through replica A', () => seen.size >= SLICES / 10, 30_000, 10);
    const before = seen.size;
    const killedAt = Date.now();
    replicaA.kill('SIGKILL');
    await replicaA.exited;

    await waitFor('the SDK on replica B again', () => connects.length > 0, 20_000, 10);
    const results = await within(running, 60_000, 'exec() after the kill');
    const done = Date.now();

    expect(disconnects).toHaveLength(1);
    expect(disconnects[0].scheduler).toBe(`${replicaA.url}/`);
    expect(connects).toHaveLength(1);
    expect(connects[0].scheduler).toBe(`${replicaB.url}/`);
    expectEveryResultOnce(results, seen);
    expect(await stored(job.id as string)).toEqual({ rows: SLICES, distinct: SLICES, right: SLICES });
    expect(before).toBeLessThan(SLICES); // the kill happened under a running job
    process.stdout.write(
      `[chaos scheduler-failover] replica A killed after ${before}/${SLICES} results: disconnect seen after ${disconnects[0].at - killedAt} ms, ` +
        `following the job on replica B after ${connects[0].at - killedAt} ms (downtime ${connects[0].downtimeMs} ms), ` +
        `exec() resolved ${done - killedAt} ms after the kill; ${SLICES} results each once and right, ${SLICES} rows stored\n`,
    );
  }, 90_000);

  it('rejects exec() with EUNAVAILABLE after unreachableTimeoutMs when every replica is dead, and leaves the job to be resumed', async () => {
    const { replicaA, replicaB } = commune!;
    expect(replicaA.child.signalCode).toBe('SIGKILL'); // still dead from the previous test
    const { compute } = await init({ scheduler: [replicaA.url, replicaB.url], home });
    const job = compute.for(0, SLICES - 1, work);
    const seen = countResults(job);
    const events: string[] = [];
    let unavailable: unknown;
    job.on('disconnect', () => events.push('disconnect'));
    job.on('connect', () => events.push('connect'));
    job.on('EUNAVAILABLE', (error: unknown) => {
      events.push('EUNAVAILABLE');
      unavailable = error;
    });
    const deployStarted = Date.now();
    const running = job.exec(undefined, undefined, undefined, { unreachableTimeoutMs: 3_000 });
    running.catch(() => undefined);
    // Replica A refuses the connection: the deploy goes to B.
    await waitFor('the deploy through replica B', () => job.id !== undefined, 30_000, 10);
    const deployMs = Date.now() - deployStarted;
    await waitFor('some results through replica B', () => seen.size >= SLICES / 10, 30_000, 10);
    const jobId = job.id as string;

    const killedAt = Date.now();
    replicaB.kill('SIGKILL');
    await replicaB.exited;
    const error = await within(
      running.then(
        () => {
          throw new Error('exec() resolved with every replica dead');
        },
        (reason: unknown) => reason,
      ),
      30_000,
      'exec() with every replica dead',
    );
    const rejectedAfter = Date.now() - killedAt;
    expect(error).toEqual(expect.objectContaining({ code: ErrorCode.EUNAVAILABLE }));
    expect(unavailable).toBe(error);
    expect(events).toEqual(['disconnect', 'EUNAVAILABLE']);
    expect(rejectedAfter).toBeGreaterThanOrEqual(2_900);
    expect(rejectedAfter).toBeLessThan(15_000);

    // The job was left running: a replica comes back on B's address, the workers reconnect, and
    // compute.resume(id).exec() gets every result.
    const port = Number(new URL(replicaB.url).port);
    const restartStarted = Date.now();
    restartedB = await spawnScheduler(env, port);
    await waitFor('both workers back on replica B', async () => (await connectedWorkers(restartedB!.url)) === 2, 30_000, 100);
    const workersBackMs = Date.now() - restartStarted;
    const resumed = compute.resume(jobId);
    const resumedSeen = countResults(resumed);
    const results = await within(resumed.exec(), 60_000, 'the resumed exec()');
    const resumedMs = Date.now() - restartStarted;
    expect(Array.from(results).filter((value, i) => value !== i * 3)).toEqual([]);
    expect(Array.from(results)).toHaveLength(SLICES);
    expect([...resumedSeen.values()].filter((count) => count !== 1)).toEqual([]);
    expect(await stored(jobId)).toEqual({ rows: SLICES, distinct: SLICES, right: SLICES });
    process.stdout.write(
      `[chaos scheduler-failover] deploy with replica A dead took ${deployMs} ms (through B); both replicas dead after ${seen.size}/${SLICES} results: ` +
        `exec() rejected EUNAVAILABLE ${rejectedAfter} ms after the kill (unreachableTimeoutMs 3000); replica B restarted, ` +
        `workers back after ${workersBackMs} ms, compute.resume(id).exec() resolved ${resumedMs} ms after the restart with ${SLICES} results each once and right\n`,
    );
  }, 90_000);
});

/** The work function's progress(), defined in the sandbox. */
declare function progress(value?: number | string): boolean;
