import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init } from '@commune/client';
import { isolatedEnvironment, waitFor } from '../support/services.js';
import { connectedWorkers, spawnWorker, startTwoReplicaCommune, type RunningProcess, type TwoReplicaCommune } from '../support/processes.js';

/**
 * Real processes over real sockets: scheduler replicas (built dist), `commune-worker` processes,
 * and the SDK in this process. The spec's Example Programs run through job.exec() and through
 * job.localExec() and must agree.
 */
describe('a private Distributed Computer (e2e)', () => {
  // Short progress limit and two attempts per slice so ENOPROGRESS shows within seconds.
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn', PROGRESS_TIMEOUT_MS: '1500', MAX_ATTEMPTS_PER_SLICE: '2' });
  const home = mkdtempSync(join(tmpdir(), 'commune-e2e-'));
  let replicaA: RunningProcess & { url: string };
  let replicaB: RunningProcess & { url: string };
  const workers: RunningProcess[] = [];
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  let commune: TwoReplicaCommune;

  beforeAll(async () => {
    commune = await startTwoReplicaCommune(env);
    ({ replicaA, replicaB } = commune);
    workers.push(...commune.workers);
    ({ compute } = await init({ scheduler: replicaA.url, home }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.stop()));
    await commune?.stop();
  }, 30_000);

  const examples: Array<{ name: string; make: () => ReturnType<typeof compute.for>; expected: unknown }> = [
    {
      name: 'Example 1: compute.for() form 2b',
      make: () => compute.for(1, 3, function (i: number) {
        progress('100%');
        return i * 10;
      }),
      expected: [10, 20, 30],
    },
    {
      name: 'Example 2: compute.for() form 1, step overflow',
      make: () => compute.for({ start: 10, end: 13, step: 2 }, (i: number) => progress(1) && i),
      expected: [10, 12],
    },
    {
      name: 'Example 3: compute.for() form 1 with group',
      make: () => compute.for({ start: 10, end: 13, group: 2 }, (i: number[]) => progress(1) && i[1]! - i[0]!),
      expected: [1, 1],
    },
    {
      name: 'Example 6: compute.for() form 4',
      make: () => compute.for([123, 456], function (i: number) {
        progress(1);
        return i;
      }),
      expected: [123, 456],
    },
  ];

  for (const example of examples) {
    it(`${example.name} through job.exec()`, async () => {
      const results = await example.make().exec();
      expect(Array.from(results)).toEqual(example.expected);
    }, 30_000);
    it(`${example.name} through job.localExec() gives the same results`, async () => {
      const results = await example.make().localExec(2);
      expect(Array.from(results)).toEqual(example.expected);
    }, 30_000);
  }

  it('Example 1 result handle: entries, fromEntries, keys, values, key', async () => {
    const results = await compute.for(1, 3, (i: number) => progress(1) && i * 10).exec();
    expect(results.entries()).toEqual([['1', 10], ['2', 20], ['3', 30]]);
    expect(results.fromEntries()).toEqual({ 1: 10, 2: 20, 3: 30 });
    expect(results.keys()).toEqual(['1', '2', '3']);
    expect(results.values()).toEqual([10, 20, 30]);
    expect(results.key(2)).toBe('3');
    expect(results.lookupValue(2)).toBe(20);
  }, 30_000);

  it('streams events: accepted, result per slice, console, status, complete', async () => {
    const job = compute.for(0, 9, (i: number) => {
      progress(1);
      console.log('slice', i);
      return i * i;
    });
    const seen = { accepted: 0, result: 0, console: 0, status: 0, complete: 0 };
    for (const name of Object.keys(seen) as Array<keyof typeof seen>) job.on(name, () => seen[name]++);
    const results = await job.exec();
    expect(Array.from(results)).toEqual([0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    await waitFor('console events of all 10 slices', () => seen.console >= 10, 5_000);
    expect(seen).toMatchObject({ accepted: 1, result: 10, complete: 1 });
    expect(seen.status).toBeGreaterThan(0);
  }, 30_000);

  it('runs a 10,000-slice job with every result exactly once', async () => {
    const job = compute.for(0, 9999, (i: number) => progress(1) && i * 2);
    let resultEvents = 0;
    job.on('result', () => resultEvents++);
    const results = await job.exec();
    expect(results.length).toBe(10_000);
    for (let i = 0; i < 10_000; i++) if (results[i] !== i * 2) throw new Error(`slice ${i}: ${String(results[i])}`);
    expect(resultEvents).toBe(10_000);
  }, 120_000);

  it('cancels a running job', async () => {
    const job = compute.for(0, 1e9, (i: number) => progress(1) && i);
    const execution = job.exec();
    await new Promise<void>((resolve) => job.once('result', () => resolve()));
    await job.cancel();
    await expect(execution).rejects.toMatchObject({ code: 'ECANCELLED' });
  }, 30_000);

  it('fails a job whose slice never calls progress() with ENOPROGRESS', async () => {
    const job = compute.for([1], function () {
      for (;;) { /* never reports progress */ }
    });
    const sliceErrors: string[] = [];
    let failureEvents = 0;
    job.on('error', (event: { name?: string; message: string }) => sliceErrors.push(event.message));
    job.on('ENOPROGRESS', () => failureEvents++);
    await expect(job.exec()).rejects.toMatchObject({ code: 'ENOPROGRESS' });
    expect(sliceErrors.length).toBe(2);
    expect(failureEvents).toBe(1);
  }, 30_000);

  it('completes a job with every result exactly once when a worker is SIGKILLed mid-job', async () => {
    const extra = spawnWorker(replicaB.url, 2);
    workers.push(extra);
    await waitFor('the third worker', async () => (await connectedWorkers(replicaB.url)) === 3, 20_000, 100);
    const total = 3000;
    const job = compute.for(0, total - 1, (i: number) => {
      const until = Date.now() + 2;
      while (Date.now() < until) progress();
      return i + 0.5;
    });
    const counts = new Map<number, number>();
    job.on('result', (event: { sort: number }) => counts.set(event.sort, (counts.get(event.sort) ?? 0) + 1));
    const execution = job.exec();
    await waitFor('a tenth of the results', () => counts.size >= total / 10, 60_000);
    extra.kill('SIGKILL');
    const results = await execution;
    expect(results.length).toBe(total);
    for (let i = 0; i < total; i++) if (results[i] !== i + 0.5) throw new Error(`slice ${i}: ${String(results[i])}`);
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    expect(counts.size).toBe(total);
    // Read with the job's read token from the deploy reply: the job id alone reads nothing.
    const status = await (await fetch(`${replicaA.url}/jobs/${job.id}`, { headers: { 'x-commune-read-token': job.readToken! } })).json();
    expect(status).toMatchObject({ runStatus: 'finished', total, computed: total });
  }, 120_000);
});

declare function progress(value?: number | string): boolean;
