import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init } from '@commune/client';
import { isolatedEnvironment } from '../support/services.js';
import { startOneSchedulerCommune, type OneSchedulerCommune } from '../support/processes.js';

/** The sandbox globals the work functions below use (they run in a sandbox, not here). */
declare function progress(value?: number | string): boolean;
declare const worker: {
  state: Record<string, number | string | unknown> & {
    best: number;
    count: number;
    set(condition?: string, property?: string): Promise<void>;
    increment(property: string, n?: number): Promise<void>;
    testAndSet(condition?: string, property?: string): Promise<unknown>;
    addEventListener(event: string, listener: () => void): void;
  };
};

/**
 * Conformance of spec "Shared State", "Synchronization" and its example: job.state in the client,
 * worker.state in sandboxes, arbitrated by a live scheduler (exec) or by the client (localExec),
 * which must agree.
 */
describe('shared state (conformance, e2e)', () => {
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn' });
  const home = mkdtempSync(join(tmpdir(), 'commune-conformance-state-'));
  let platform: OneSchedulerCommune;
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  beforeAll(async () => {
    platform = await startOneSchedulerCommune(env);
    compute = (await init({ scheduler: platform.scheduler.url, home })).compute;
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
  }, 30_000);

  /** The spec's example, with a deterministic refiner in place of require('./refiner'). */
  const example = () => {
    const job = compute.for(1, 60, (i: number) => {
      let test;
      let best = worker.state.best;
      worker.state.addEventListener('change', () => (best = worker.state.best));
      for (let x = 0; x < i; x++) {
        test = ((x * 7919 + i * 104729) % 1000) + 3; // refine(x, i)
        if (test < best) {
          worker.state.best = test;
          worker.state.set('min', 'best');
          best = test;
        }
        progress(x / i);
      }
      return best;
    });
    job.state.best = Infinity;
    return job;
  };
  const trueMinimum = (() => {
    let min = Infinity;
    for (let i = 1; i <= 60; i++) for (let x = 0; x < i; x++) min = Math.min(min, ((x * 7919 + i * 104729) % 1000) + 3);
    return min;
  })();

  it("the spec's example: job.state.best is the minimum after exec() and after localExec(), the same", async () => {
    const remote = example();
    await remote.exec();
    const local = example();
    await local.localExec(2);
    expect(remote.state.best).toBe(trueMinimum);
    expect(local.state.best).toBe(trueMinimum);
    expect(Object.keys(remote.state)).toEqual(['best']); // the methods are not enumerable
  }, 60_000);

  const counting = () => {
    const job = compute.for(0, 39, async (i: number) => {
      await worker.state.increment('count');
      await worker.state.increment('total', i);
      await worker.state.increment('down', -1);
      progress(1);
      return worker.state.count;
    });
    job.state.count = 0;
    job.state.total = 0;
    job.state.down = 0;
    return job;
  };

  it('increment() from every slice sums exactly (exec and localExec)', async () => {
    for (const run of [(job: ReturnType<typeof counting>) => job.exec(), (job: ReturnType<typeof counting>) => job.localExec(3)]) {
      const job = counting();
      await run(job);
      expect({ ...job.state }).toEqual({ count: 40, total: (39 * 40) / 2, down: -40 });
    }
  }, 60_000);

  it('compute.resume(jobId).exec() ends with the job\'s state as the scheduler holds it (exec)', async () => {
    const job = counting();
    await job.exec();
    const resumed = compute.resume(job.id!);
    expect(Array.from(await resumed.exec())).toHaveLength(40);
    expect({ ...resumed.state }).toEqual({ count: 40, total: (39 * 40) / 2, down: -40 });
  }, 60_000);

  it('testAndSet() resolves with the state before or false; set() replaces; conditions follow JS operators', async () => {
    const work = async (i: number) => {
      progress(1);
      if (i !== 0) return null;
      const outcomes: unknown[] = [];
      worker.state.level = 3;
      outcomes.push(await worker.state.testAndSet('max', 'level'));
      worker.state.level = 9;
      outcomes.push(await worker.state.testAndSet('max', 'level'));
      worker.state.level = '10';
      outcomes.push(await worker.state.testAndSet('<=', 'level')); // '10' <= 9 is false
      worker.state.level = 9;
      outcomes.push(await worker.state.testAndSet('==', 'level'));
      worker.state.extra = 'x';
      await worker.state.set();
      outcomes.push({ ...worker.state });
      return outcomes;
    };
    const expected = [false, { level: 5, name: 'n' }, false, { level: 9, name: 'n' }, { level: 9, name: 'n', extra: 'x' }];
    for (const local of [false, true]) {
      const job = compute.for(0, 0, work);
      job.state.level = 5;
      job.state.name = 'n';
      const results = local ? await job.localExec() : await job.exec();
      expect(results[0]).toEqual(expected);
      expect({ ...job.state }).toEqual({ level: 9, name: 'n', extra: 'x' });
    }
  }, 60_000);

  it('the job handle emits `change` for a listening client, and job.state.increment() works from the client', async () => {
    const job = compute.for(0, 2, async (i: number) => {
      await worker.state.increment('n');
      const until = Date.now() + 300;
      while (Date.now() < until) progress();
      return i;
    });
    job.state.n = 100;
    const seen: number[] = [];
    job.on('change', () => seen.push(job.state.n as number));
    job.on('accepted', () => void job.state.increment('n', 1000));
    await job.exec();
    expect(job.state.n).toBe(1103);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[seen.length - 1]).toBe(1103);
  }, 60_000);

  it('a state over the limit is refused before deploy (ESTATETOOBIG)', async () => {
    const job = compute.for(0, 0, () => 1);
    job.state.big = 'x'.repeat(70_000);
    await expect(job.exec()).rejects.toMatchObject({ code: 'ESTATETOOBIG' });
    await expect(job.localExec()).rejects.toMatchObject({ code: 'ESTATETOOBIG' });
  }, 30_000);
});
