import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Wallet } from 'ethers';
import { init, type Appliance } from '@commune/client';
import { isolatedEnvironment } from '../support/services.js';
import { startOneSchedulerCommune, type OneSchedulerCommune } from '../support/processes.js';

/* eslint-disable no-var */
// A global of the sandbox, declared so the work functions below type-check.
declare var progress: (n?: number | string) => boolean;
/* eslint-enable no-var */

/**
 * Conformance of the Compute API's appliances (spec "Appliance Handles"): an appliance is
 * published with two functions through `new compute.Appliance(name, version, publishKeystore)`,
 * then referenced by an npm range and by "#versionId", and its functions run through
 * appliance.for / appliance.do on a live Commune (a scheduler, `commune-worker` processes) with
 * job.exec() and with job.localExec(), which must agree.
 */
describe('appliances (conformance, e2e)', () => {
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn' });
  const home = mkdtempSync(join(tmpdir(), 'commune-conformance-appliances-'));
  let scheduler: OneSchedulerCommune['scheduler'];
  let platform: OneSchedulerCommune;
  let commune: Awaited<ReturnType<typeof init>>;
  let compute: Awaited<ReturnType<typeof init>>['compute'];
  const name = `math-util-${randomBytes(4).toString('hex')}`;
  const published: Record<string, { versionId: string; receipt: string; cost: string }> = {};

  /** Version `version` of the appliance, with `square` multiplied by `factor` (so each version's results tell it apart). */
  async function publishVersion(version: string, factor: number, publishKeystore = commune.wallet.get()) {
    const appliance = new compute.Appliance(name, version, await publishKeystore);
    appliance.description = 'squares and names';
    appliance.website = 'https://example.org/math-util';
    appliance.hashTags = 'math,demo';
    appliance.author = 'Commune tests';
    appliance.defineFunction('square', new Function('i', `progress(1); return ${factor} * i * i;`) as (i: number) => number);
    appliance.defineFunction('name', (i: number) => {
      progress(1);
      return `n${i}`;
    }, (i: number) => ({ cpuHours: i }), { cpuHours: 0.0001 });
    return { appliance, result: await appliance.publish() };
  }

  beforeAll(async () => {
    platform = await startOneSchedulerCommune(env);
    scheduler = platform.scheduler;
    commune = await init({ scheduler: scheduler.url, home });
    compute = commune.compute;
    // 1.0.0 and 1.2.0 are in ^1.0.0 (1.2.0 is the highest); 2.0.0 is not.
    for (const [version, factor] of [['1.0.0', 10], ['1.2.0', 1], ['2.0.0', -1]] as const) {
      published[version] = (await publishVersion(version, factor)).result;
    }
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
  }, 30_000);

  const squares = Array.from({ length: 10 }, (_, i) => (i + 1) * (i + 1));

  /** Runs a job made twice by `make`, through exec() and through localExec(); both must give `expected`. */
  async function bothWays(make: () => ReturnType<Appliance['for']>, expected: unknown[]) {
    const remote = make();
    const remoteResults = await remote.exec();
    expect(Array.from(remoteResults)).toEqual(expected);
    const local = make();
    const localResults = await local.localExec(2);
    expect(Array.from(localResults)).toEqual(expected);
    expect(local.appliance).toEqual(remote.appliance);
    return { remote, local };
  }

  it('publish() resolves {versionId, receipt, cost}; the appliance gets its id and versionId', async () => {
    const { appliance, result } = await publishVersion('1.3.0-beta.1', 1);
    expect(result.versionId).toMatch(/^[0-9a-f]{64}$/);
    expect(result.receipt).toMatch(/^0x[0-9a-f]{64}$/);
    expect(result.cost).toBe('0');
    expect(appliance.versionId).toBe(result.versionId);
    expect(appliance.id).toMatch(/^a_/);
    expect(published['1.0.0']!.versionId).not.toBe(published['1.2.0']!.versionId);
  });

  it('appliance.for(1, 10, "square") of ^1.0.0 runs the highest 1.x version, with the same results through exec() and localExec()', async () => {
    const appliance = new compute.Appliance(name, '^1.0.0');
    const { remote } = await bothWays(() => appliance.for(1, 10, 'square'), squares);
    expect(appliance.version).toBe('1.2.0');
    expect(appliance.versionId).toBe(published['1.2.0']!.versionId);
    expect(remote.appliance).toEqual({ versionId: published['1.2.0']!.versionId, function: 'square' });
    expect(appliance).toMatchObject({ name, description: 'squares and names', website: 'https://example.org/math-util', hashTags: 'math,demo', author: 'Commune tests' });
  }, 60_000);

  it('appliance.do(3, "name") of ^1.0.0: the same results through exec() and localExec()', async () => {
    const appliance = new compute.Appliance(name, '^1.0.0');
    await bothWays(() => appliance.do(3, 'name'), ['n0', 'n1', 'n2']);
  }, 60_000);

  it('"#versionId" runs exactly that version (1.0.0 although 1.2.0 is newer), through exec() and localExec()', async () => {
    const appliance = new compute.Appliance(name, `#${published['1.0.0']!.versionId}`);
    await bothWays(() => appliance.for(1, 10, 'square'), squares.map((square) => 10 * square));
    expect(appliance.version).toBe('1.0.0');
    await bothWays(() => appliance.do(3, 'name'), ['n0', 'n1', 'n2']);
  }, 60_000);

  it("the job's status and info on the scheduler say which appliance, version and function it runs", async () => {
    const appliance = new compute.Appliance(name, '^1.0.0');
    const job = appliance.do(3, 'name');
    await job.exec();
    const origin = { applianceId: appliance.id, name, version: '1.2.0', versionId: published['1.2.0']!.versionId, function: 'name' };
    expect((await compute.status(job)).appliance).toEqual(origin);
    expect((await compute.getJobInfo(job.id!)).status.appliance).toEqual(origin);
  }, 60_000);

  it('publishing a version twice rejects with EEXIST; another key rejects with ENAMESPACE', async () => {
    await expect(publishVersion('1.0.0', 1)).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(publishVersion('3.0.0', 1, Promise.resolve(Wallet.createRandom()))).rejects.toMatchObject({ code: 'ENAMESPACE' });
  }, 30_000);

  it('an unknown function, a range nothing satisfies and an invalid range reject exec() and localExec()', async () => {
    await expect(new compute.Appliance(name, '^1.0.0').for(1, 3, 'cube').exec()).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(new compute.Appliance(name, '^1.0.0').do(1, 'cube').localExec()).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(new compute.Appliance(name, '^9.0.0').do(1, 'name').exec()).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(new compute.Appliance(name, 'latest').do(1, 'name').localExec()).rejects.toMatchObject({ code: 'EINVAL' });
  }, 30_000);
});
