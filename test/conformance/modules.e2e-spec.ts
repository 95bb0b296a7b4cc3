import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init } from '@commune/client';
import { isolatedEnvironment } from '../support/services.js';
import { startOneSchedulerCommune, type OneSchedulerCommune } from '../support/processes.js';

/**
 * Conformance of modules (spec "Job Handles / requires", "Worker Environment: require()",
 * "Modules"): a job declares a private module with job.requires(), the SDK bundles it with its
 * dependencies, the scheduler stores it and ships it to each worker connection once, and the
 * work function's require() loads it in the sandbox. The same job through job.exec() on a live
 * Commune (a scheduler and one `commune-worker` process) and through job.localExec() must agree.
 */
describe('modules: job.requires() and require() in the sandbox (conformance, e2e)', () => {
  // Small tasks, so a 100-slice job is at least 20 tasks on one worker connection; one attempt per slice.
  const maxSlicesPerTask = 5;
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn', MAX_SLICES_PER_TASK: String(maxSlicesPerTask), MAX_ATTEMPTS_PER_SLICE: '1' });
  const home = mkdtempSync(join(tmpdir(), 'commune-conformance-modules-'));
  let platform: OneSchedulerCommune;
  let scheduler: OneSchedulerCommune['scheduler'];
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  beforeAll(async () => {
    platform = await startOneSchedulerCommune(env, 1);
    scheduler = platform.scheduler;
    compute = (await init({ scheduler: scheduler.url, home, localExec: { maxAttemptsPerSlice: 1 } })).compute;
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
  }, 30_000);

  /** A counter of the scheduler's /metrics. */
  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${scheduler.url}/metrics`)).text();
    const line = text.split('\n').find((entry) => entry.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  /** The refiner job: `refine(x)` of the private module ./fixtures/refiner (and its three dependencies). */
  const refinerJob = (end: number) => {
    const job = compute.for(1, end, (x: number) => progress(1) && require('./refiner').refine(x));
    job.requires('./fixtures/refiner');
    return job;
  };
  const expected = (end: number) => Array.from({ length: end }, (_, i) => `refined:${(i + 1) * 3}`);

  it('a job requiring ./fixtures/refiner gives the same results through exec() and localExec()', async () => {
    const remote = Array.from(await refinerJob(12).exec());
    const local = Array.from(await refinerJob(12).localExec(2));
    expect(remote).toEqual(expected(12));
    expect(local).toEqual(remote);
  }, 60_000);

  it('compute.getJobInfo() lists the deployed module table: the names given to requires() and every file by hash (exec)', async () => {
    const job = refinerJob(2);
    await job.exec();
    const info = await compute.getJobInfo(job.id!);
    expect(Object.keys(info.modules!.main)).toContain('./fixtures/refiner');
    expect(info.modules!.files).toHaveLength(4); // refiner + 3 dependencies
    expect(info.modules!.files.every((file) => /^0x[0-9a-f]{64}$/.test(file.hash))).toBe(true);
  }, 60_000);

  it('a worker receives each module source once for many slices and tasks, and not again for a job with the same modules', async () => {
    const sentBefore = await metric('commune_module_sources_sent_total');
    const leasedBefore = await metric('commune_slices_leased_total');
    // The first job of this connection with these modules was the test above (same worker connection).
    const job = compute.for(1, 100, (x: number) => {
      progress(1);
      const refiner = require('./refiner');
      return [refiner.refine(x), refiner.calls()];
    });
    job.requires('./fixtures/refiner');
    const results = Array.from(await job.exec()) as Array<[string, number]>;
    expect(results.map(([value]) => value)).toEqual(expected(100));
    // The module is evaluated once per sandbox and job: its state carries over from slice to slice.
    expect(Math.max(...results.map(([, calls]) => calls))).toBeGreaterThan(1);
    expect((await metric('commune_slices_leased_total')) - leasedBefore).toBeGreaterThanOrEqual(100);
    expect((await metric('commune_module_sources_sent_total')) - sentBefore).toBe(0);
  }, 60_000);

  it('a fresh worker connection gets the sources once: 4 files (refiner + 3 dependencies) for a 60-slice job in 12+ tasks', async () => {
    // Replace the worker: a new connection has been sent nothing.
    await platform.stopWorker(platform.workers[0]!);
    await platform.addWorker();
    const sentBefore = await metric('commune_module_sources_sent_total');
    const leasedBefore = await metric('commune_slices_leased_total');
    expect(Array.from(await refinerJob(60).exec())).toEqual(expected(60));
    expect((await metric('commune_slices_leased_total')) - leasedBefore).toBeGreaterThanOrEqual(60);
    expect((await metric('commune_module_sources_sent_total')) - sentBefore).toBe(4);
  }, 60_000);

  it('require() of an undeclared module or a Node built-in fails the slice with MODULE_NOT_FOUND (exec and localExec)', async () => {
    const builtin = () => {
      const job = compute.for(1, 1, () => {
        progress(1);
        return require('./uses-fs').read();
      });
      job.requires('./fixtures/uses-fs');
      return job;
    };
    const undeclared = () => compute.for(1, 1, () => progress(1) && require('./refiner').refine(1));
    for (const make of [builtin, undeclared]) {
      await expect(make().exec()).rejects.toMatchObject({ code: 'EWORKFUNCTION', message: expect.stringMatching(/Cannot find module/) });
      await expect(make().localExec()).rejects.toMatchObject({ code: 'EWORKFUNCTION', message: expect.stringMatching(/Cannot find module/) });
    }
  }, 60_000);

  it('a module that cannot be found is refused before anything is deployed (ENOTFOUND)', async () => {
    const job = compute.for(1, 1, () => progress(1));
    job.requires('./fixtures/not-there');
    await expect(job.exec()).rejects.toMatchObject({ code: 'ENOTFOUND', message: expect.stringMatching(/cannot find the module '\.\/fixtures\/not-there'/) });
    expect(job.id).toBeUndefined();
  }, 30_000);
});

declare function progress(value?: number | string): boolean;
declare function require(name: string): { refine(x: number): string; calls(): number; read(): string };
