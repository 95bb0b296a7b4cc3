import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Wallet } from 'ethers';
import { RangeObject } from '@commune/ranges';
import { init } from '../init.js';
import { slicePaymentOfferToDcc } from '../job.js';
import { stats } from '../stats.js';
import { dcpModuleExports } from './dcp-modules.js';
import { dcpModuleNameOf, providedDcpModules, refusedDcpModules } from './module-names.js';

/**
 * What `require('dcp/<name>')` answers. Node's own loader is exercised by the child processes of
 * test/conformance/dcp-examples.e2e-spec.ts: jest hands its tests a copy of node:module, so a hook
 * on Module._resolveFilename cannot be observed from here.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const requireLikeAProgram = (request: string): any => dcpModuleExports(request.slice('dcp/'.length));

/** Every module name in dcp-client 5.6.1's ns-map.js (dcp/build, then its list). */
const nsMapNames = [
  'build', 'dcp-config', 'compute', 'wallet', 'identity', 'jnu', 'types', 'protocol', 'dom-tk', 'dcp-assert', 'dcp-xhr', 'dcp-env',
  'dcp-url', 'cli', 'constants', 'dcp-timers', 'resource-dir', 'dcp-events', 'eth', 'serialize', 'job', 'range-object',
  'stats-ranges', 'standard-objects', 'worker', 'utils', 'publish', 'compute-groups', 'signal-handler',
];

describe('dcp/* modules and dcpConfig after init()', () => {
  let home: string;
  const keystore = Wallet.createRandom();
  const savedEnv = { commune: process.env.COMMUNE_SCHEDULER_URL, dcp: process.env.DCP_SCHEDULER_LOCATION };

  beforeEach(async () => {
    home = await mkdtemp(path.join(tmpdir(), 'commune-dcp-'));
    delete process.env.COMMUNE_SCHEDULER_URL;
    delete process.env.DCP_SCHEDULER_LOCATION;
  });

  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
    for (const [name, value] of [['COMMUNE_SCHEDULER_URL', savedEnv.commune], ['DCP_SCHEDULER_LOCATION', savedEnv.dcp]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  it('decides every name of ns-map: provided or refused, none left to resolve to nothing', () => {
    const decided = [...providedDcpModules, ...Object.keys(refusedDcpModules)].sort();
    expect(decided).toEqual([...nsMapNames].sort());
  });

  it("require('dcp/compute'), dcp/wallet and dcp/dcp-config are init()'s compute, wallet and globalThis.dcpConfig", async () => {
    const { compute, wallet } = await init({ scheduler: 'http://sched.test:4000', bank: 'http://bank.test:4100', home, keystore });
    expect(requireLikeAProgram('dcp/compute')).toBe(compute);
    expect(requireLikeAProgram('dcp/wallet')).toBe(wallet);
    expect(requireLikeAProgram('dcp/dcp-config')).toBe(globalThis.dcpConfig);
  });

  it('dcpConfig holds Commune\'s locations as URLs, as DCP programs read them', async () => {
    await init({ scheduler: 'http://sched.test:4000', bank: 'http://bank.test:4100', home, keystore });
    const config = globalThis.dcpConfig!;
    expect(config.scheduler.location).toBeInstanceOf(URL);
    expect(config.scheduler.location.href).toBe('http://sched.test:4000/');
    expect(config.scheduler.services.jobSubmit.location.href).toBe('http://sched.test:4000/client');
    expect(config.scheduler.services.eventRouter.location.href).toBe('http://sched.test:4000/client');
    expect(config.scheduler.services.taskDistributor.location.href).toBe('http://sched.test:4000/worker');
    expect(config.scheduler.services.resultSubmitter.location.href).toBe('http://sched.test:4000/worker');
    expect(config.bank.location.href).toBe('http://bank.test:4100/');
    expect(config.bank.services.bankTeller.location.href).toBe('http://bank.test:4100/');
  });

  it("takes dcp-client's { scheduler: { location } } and DCP_SCHEDULER_LOCATION; COMMUNE_SCHEDULER_URL first", async () => {
    await init({ scheduler: { location: new URL('http://shaped.test:1/') }, home, keystore });
    expect(globalThis.dcpConfig!.scheduler.location.href).toBe('http://shaped.test:1/');
    process.env.DCP_SCHEDULER_LOCATION = 'http://dcp-env.test:2/';
    const { compute } = await init({ home, keystore });
    expect(compute.for([1], (x: number) => x).scheduler.href).toBe('http://dcp-env.test:2/');
    process.env.COMMUNE_SCHEDULER_URL = 'http://commune-env.test:3/';
    await init({ home, keystore });
    expect(globalThis.dcpConfig!.scheduler.location.href).toBe('http://commune-env.test:3/');
  });

  it('a later init() replaces the modules, also for names already required', async () => {
    const first = await init({ scheduler: 'http://one.test:1', home, keystore });
    expect(requireLikeAProgram('dcp/compute')).toBe(first.compute);
    const second = await init({ scheduler: 'http://two.test:2', home, keystore });
    expect(requireLikeAProgram('dcp/compute')).toBe(second.compute);
    expect(requireLikeAProgram('dcp/dcp-config').scheduler.location.href).toBe('http://two.test:2/');
  });

  it('dcp/range-object and dcp/stats-ranges are the SDK\'s range classes and stats.set', async () => {
    await init({ home, keystore });
    expect(requireLikeAProgram('dcp/range-object').RangeObject).toBe(RangeObject);
    expect(requireLikeAProgram('dcp/stats-ranges').set).toBe(stats.set);
  });

  it('a refused name throws MODULE_NOT_FOUND saying what Commune offers; names outside ns-map are not taken', async () => {
    await init({ home, keystore });
    expect(() => requireLikeAProgram('dcp/worker')).toThrow(
      expect.objectContaining({ code: 'MODULE_NOT_FOUND', message: expect.stringMatching(/^Cannot find module 'dcp\/worker': Commune does not provide it\. .*commune-worker/) }),
    );
    expect(() => requireLikeAProgram('dcp/identity')).toThrow(expect.objectContaining({ message: expect.stringContaining("require('dcp/wallet').getId()") }));
    expect(() => requireLikeAProgram('dcp/compute-groups')).toThrow(expect.objectContaining({ message: expect.stringContaining('compute.createComputeGroup') }));
    // Not a dcp-client name: the hook leaves it to Node's resolver.
    expect(dcpModuleNameOf('dcp/no-such-module')).toBeUndefined();
    expect(dcpModuleNameOf('dcp-client')).toBeUndefined();
    expect(dcpModuleNameOf('./dcp/compute')).toBeUndefined();
    expect(dcpModuleNameOf('dcp/compute')).toBe('compute');
  });

  it("wallet.getId() is <home>/id.keystore, created once and kept; the payment account is another key", async () => {
    const { wallet } = await init({ home, keystore });
    const identity = await wallet.getId();
    expect((await stat(path.join(home, 'id.keystore'))).mode & 0o777).toBe(0o600);
    expect(await wallet.getId()).toBe(identity);
    const again = await init({ home, keystore });
    expect((await again.wallet.getId()).address).toBe(identity.address);
    expect(identity.address).not.toBe(keystore.address);
  });

  it("compute.marketPrice (the spec's Example 1) is compute.marketRate: a paid offer at the market rate", async () => {
    const { compute } = await init({ home, keystore });
    expect(compute.marketPrice).toBe(compute.marketRate);
    expect(slicePaymentOfferToDcc(compute.marketPrice)).toBe('0.0001465376');
    expect(slicePaymentOfferToDcc(compute.marketPrice(2))).toBe('0.0002930752');
  });
});
