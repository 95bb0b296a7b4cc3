import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init } from '@commune/client';
import { isolatedEnvironment, waitFor } from '../support/services.js';
import { startOneSchedulerCommune, type OneSchedulerCommune } from '../support/processes.js';

/**
 * Compute groups end to end (the job handle's `computeGroups`; DCP worker: "the worker and the job
 * must be in the same Compute Group"): a group made with the SDK, a `commune-worker --join` in it
 * that left the public group, and a public worker. Group jobs run only in the group, public jobs
 * only on public workers; localExec() checks the credentials and gives the same results.
 */
describe('compute groups (conformance, e2e)', () => {
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn' });
  const home = mkdtempSync(join(tmpdir(), 'commune-conformance-groups-'));
  const group = { joinKey: `lab-${Date.now().toString(36)}`, joinSecret: 'the lab secret' };
  let platform: OneSchedulerCommune;
  let scheduler: OneSchedulerCommune['scheduler'];
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  beforeAll(async () => {
    platform = await startOneSchedulerCommune(env, 0);
    scheduler = platform.scheduler;
    ({ compute } = await init({ scheduler: scheduler.url, home }));
  }, 60_000);
  afterAll(async () => {
    await platform?.stop();
  }, 30_000);

  const squares = () => compute.for(1, 6, (i: number) => progress(1) && i * i);
  const expected = [1, 4, 9, 16, 25, 36];

  it('creates a group with compute.createComputeGroup; the scheduler knows its owner, never its secret', async () => {
    const created = await compute.createComputeGroup({ ...group, description: 'conformance lab' });
    expect(created).toMatchObject({ joinKey: group.joinKey, description: 'conformance lab' });
    expect(JSON.stringify(await compute.getComputeGroup(group.joinKey))).not.toContain(group.joinSecret);
    await expect(compute.createComputeGroup(group)).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('runs a group job only once a worker of its group connects (exec)', async () => {
    await platform.addWorker([], 1); // public only
    const job = squares();
    job.computeGroups.push(group);
    const done = job.exec();
    await waitFor('the job to say no connected worker can run it', async () => {
      const status = job.id ? await compute.status(job.id) : null;
      return status?.waitingFor ?? null;
    }, 20_000, 100);
    expect((await compute.status(job.id!)).computed).toBe(0);
    await platform.addWorker(['--join', `${group.joinKey}:${group.joinSecret}`, '--no-public-group'], 1);
    expect(Array.from(await done)).toEqual(expected);
    const info = await compute.getJobInfo(job.id!);
    expect(info.computeGroups).toEqual([group.joinKey]);
    expect(JSON.stringify(info)).not.toContain(group.joinSecret);
  }, 60_000);

  it('gives the same results through localExec(), which checks the credentials and needs no group', async () => {
    const job = squares();
    job.computeGroups.push(group);
    expect(Array.from(await job.localExec())).toEqual(expected);
    const bad = squares();
    bad.computeGroups.push({ joinKey: group.joinKey });
    await expect(bad.localExec()).rejects.toMatchObject({ code: 'EINVAL' });
  }, 30_000);

  it('refuses a job with a wrong secret before it runs anywhere (EPERM), and one naming no group (ENOTFOUND)', async () => {
    const wrong = squares();
    wrong.computeGroups.push({ joinKey: group.joinKey, joinSecret: 'guess' });
    await expect(wrong.exec()).rejects.toMatchObject({ code: 'EPERM' });
    const unknown = squares();
    unknown.computeGroups.push({ joinKey: 'no-such-group', joinSecret: 's' });
    await expect(unknown.exec()).rejects.toMatchObject({ code: 'ENOTFOUND' });
  }, 30_000);

  it('keeps public jobs off a worker that left the public group', async () => {
    await platform.stopWorker(platform.workers[0]!); // the public worker; the group worker (--no-public-group) stays
    const job = squares();
    const done = job.exec();
    await waitFor('the public job to wait for a public worker', async () => (job.id ? (await compute.status(job.id)).waitingFor ?? null : null), 20_000, 100);
    await platform.addWorker([], 1);
    expect(Array.from(await done)).toEqual(expected);
  }, 60_000);
});

declare function progress(value?: number | string): boolean;
