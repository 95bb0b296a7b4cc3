import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUnits, Wallet, type ContractTransactionResponse, type JsonRpcProvider } from 'ethers';
import { attachContracts, connectProvider, deployContracts, startLocalChain, writeBridgeConfig, type LocalChain } from '@commune/chain';
import pg from 'pg';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { init } from '@commune/client';
import { balanceOf, balancesOf, devFeeAccount, expectLedgerBalanced, mintInProcess } from '../support/ledger.js';
import { startOwnRedis, type OwnRedis } from '../support/own-services.js';
import { freePort, spawnBank, spawnScheduler, spawnWorker, type RunningProcess } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment, waitFor, within } from '../support/services.js';

const units = (dcc: string) => parseUnits(dcc, 18).toString();

/**
 * Issue 8, "Redis is a cache, truly": a Redis of the test's own with nothing on disk loses
 * everything twice under a running paid job of 20,000 slices (once mid-job, once while payments
 * settle). The job must go on by itself within seconds (leases, cursors, ready sets, escrow and
 * the BullMQ schedules of the scheduler and the bank rebuilt from PostgreSQL), every result must
 * be stored exactly once and be right, and every accepted slice paid exactly once.
 * Real processes: the scheduler, the bank, two `commune-worker`s, redis-server.
 */
describe('Redis loses everything under a running paid job (chaos, e2e)', () => {
  const SLICES = 20_000;
  let redis: OwnRedis | undefined;
  const env = isolatedEnvironment({
    LEASE_TIMEOUT_MS: '5000',
    LEASE_SWEEP_INTERVAL_MS: '500',
    ESCROW_SLICES: '4000',
    SETTLEMENT_INTERVAL_MS: '500',
    SETTLEMENT_BATCH_SIZE: '1000',
    MARKET_RATE_DCC_PER_SECOND: '0.01',
    MINIMUM_SLICE_PAYMENT_DCC: '0.001',
    OPERATOR_FEE_DCC: '0.0001',
    BANK_SERVICE_TOKEN: 'redis-loss-chaos-service-token-0123456789abcdef',
    NODE_OPTIONS: '--max-old-space-size=192',
  });
  const bankEnv: Record<string, string> = { ...env, DATABASE_SCHEMA: `${env.DATABASE_SCHEMA}_bank`, REDIS_PREFIX: `${env.REDIS_PREFIX}_bank`, NODE_OPTIONS: '' };
  const home = mkdtempSync(join(tmpdir(), 'commune-redis-loss-'));
  let bank: RunningProcess & { url: string };
  let scheduler: RunningProcess & { url: string };
  const workers: RunningProcess[] = [];
  let commune: Awaited<ReturnType<typeof init>> | null = null;
  /** Jobs of this suite, cancelled in afterAll if still running (the SDK keeps its link open while a job needs it). */
  const deployed: Array<{ cancel(): Promise<unknown> }> = [];
  /** What the bridge test started (a chain, a bank with its bridge), undone in afterAll whatever happened. */
  const cleanups: Array<() => Promise<unknown>> = [];
  const schedulerDb = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
  const bankDb = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${bankEnv.DATABASE_SCHEMA}"` });

  /** `redis-cli shutdown nosave` (everything in memory is gone), then a fresh redis-server on the same port. Returns when each happened. */
  const restartRedis = () => redis!.restart();

  /** The BullMQ job schedulers (repeatable jobs) of a queue, as Redis holds them now. */
  async function schedulers(queueName: string, prefix: string): Promise<string[]> {
    const queue = new Queue(queueName, { connection: { host: '127.0.0.1', port: redis!.port, maxRetriesPerRequest: 3 }, prefix });
    try {
      return (await queue.getJobSchedulers()).map((s) => s.key).sort();
    } finally {
      await queue.close();
    }
  }

  async function count(sql: string, params: unknown[], db = schedulerDb): Promise<number> {
    return Number((await db.query<{ n: string }>(sql, params)).rows[0]!.n);
  }

  /** The first result stored after `since` (PostgreSQL's clock, the same machine's), in ms since the epoch. */
  async function firstResultAfter(jobId: string, since: number): Promise<number | null> {
    const row = (await schedulerDb.query<{ t: Date | null }>('SELECT min(created_at) AS t FROM slice_results WHERE job_id = $1 AND created_at > to_timestamp($2 / 1000.0)', [jobId, since])).rows[0];
    return row?.t ? row.t.getTime() : null;
  }

  beforeAll(async () => {
    redis = await startOwnRedis();
    env.REDIS_URL = redis.url;
    bankEnv.REDIS_URL = env.REDIS_URL;
  }, 20_000);

  afterAll(async () => {
    await within(Promise.all(deployed.map((job) => job.cancel().catch(() => undefined))), 10_000, 'cancelling the jobs').catch(() => undefined);
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    await Promise.all(workers.map((worker) => worker.stop().catch(() => undefined)));
    await scheduler?.stop().catch(() => undefined);
    await bank?.stop().catch(() => undefined);
    await schedulerDb.end().catch(() => undefined);
    await bankDb.end().catch(() => undefined);
    await dropIsolated(env).catch(() => undefined);
    await dropIsolated(bankEnv).catch(() => undefined);
    await redis?.stop().catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  }, 40_000);

  it('resumes the job by itself after each loss, stores every result once and pays every slice once', async () => {
    bank = await spawnBank(bankEnv, await freePort());
    scheduler = await spawnScheduler({ ...env, BANK_URL: bank.url }, await freePort());
    await schedulerDb.connect();
    await bankDb.connect();
    commune = await init({ scheduler: scheduler.url, home });
    const owner = await (await commune.wallet.get()).getAddress();
    // The payer is funded through a second bank instance of this process on the same schema (as a
    // replica would be), closed before the faults: they hit the bank process.
    await mintInProcess(bankEnv, await freePort(), owner, units('1000'), `redis-loss-mint-${Date.now()}`);
    const earnings = [Wallet.createRandom().address, Wallet.createRandom().address];
    for (const account of earnings) workers.push(spawnWorker(scheduler.url, 2, ['--earnings', account]));
    const before = await balancesOf(bank.url, [owner, devFeeAccount, ...earnings]);

    const job = commune.compute.for(0, SLICES - 1, (i: number) => progress(1) && i * 3);
    const accepted = new Promise<void>((resolve) => job.once('accepted', () => resolve()));
    const run = job.exec(0.01);
    run.catch(() => undefined);
    deployed.push(job);
    await accepted;
    const jobId = job.id!;
    const stored = () => count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1', [jobId]);
    const expectedSchedulers = ['reconcile', 'settle-payments', 'sweep-leases'];
    const schedulerQueue = () => schedulers('maintenance', `${env.REDIS_PREFIX}:bull`);
    const bankQueue = () => schedulers('bank-maintenance', `${bankEnv.REDIS_PREFIX}:bull`);
    expect(await schedulerQueue()).toEqual(expectedSchedulers);
    expect(await bankQueue()).toEqual(['expire-holds']);

    const recoveries: Array<{ fault: string; storedAtFault: number; resultMs: number; fromDownMs: number; schedulesMs: number; settledMs?: number }> = [];
    const fault = async (name: string, measureSettlement: boolean) => {
      const storedAtFault = await stored();
      const { downAt, upAt } = await restartRedis();
      // Nothing of this deployment is left in Redis: no job state, no schedule.
      const next = await waitFor(`a result of ${jobId} stored after "${name}"`, () => firstResultAfter(jobId, upAt), 30_000, 50);
      const schedulesBack = await waitFor(`the schedules after "${name}"`, async () => {
        const [mine, bank] = [await schedulerQueue(), await bankQueue()];
        return mine.join() === expectedSchedulers.join() && bank.join() === 'expire-holds' ? Date.now() : null;
      }, 15_000, 100);
      const entry: (typeof recoveries)[number] = { fault: name, storedAtFault, resultMs: next - upAt, fromDownMs: next - downAt, schedulesMs: schedulesBack - upAt };
      if (measureSettlement) {
        const settled = await waitFor(`a payment settled after "${name}"`, async () => {
          const row = (await schedulerDb.query<{ t: Date | null }>('SELECT min(settled_at) AS t FROM slice_results WHERE job_id = $1 AND settled_at > to_timestamp($2 / 1000.0)', [jobId, upAt])).rows[0];
          return row?.t ? row.t.getTime() : null;
        }, 30_000, 50);
        entry.settledMs = settled - upAt;
      }
      recoveries.push(entry);
      console.log(`[redis-loss] ${name}: ${storedAtFault} results stored at the fault; restart -> next result ${entry.resultMs} ms ` +
        `(shutdown -> next result ${entry.fromDownMs} ms), schedules back ${entry.schedulesMs} ms` + (entry.settledMs !== undefined ? `, next payment settled ${entry.settledMs} ms` : ''));
    };

    // Fault 1: mid-job.
    await waitFor('2,000 results stored', async () => (await stored()) >= 2000, 60_000, 50);
    await fault('mid-job', false);
    // Fault 2: while payments settle (results stored but not yet posted to the bank).
    await waitFor('unsettled payments behind the results', async () =>
      (await stored()) >= 8000 && (await count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND settled_at IS NULL', [jobId])) > 0, 60_000, 20);
    await fault('while payments settle', true);

    const results = await within(run, 60_000, 'the job to complete after the second fault');
    // Every result present exactly once (the primary key) and right.
    const values = [...results.values()];
    expect(values.length).toBe(SLICES);
    expect(values.every((value: unknown, i: number) => value === i * 3)).toBe(true);
    expect(await stored()).toBe(SLICES);
    expect(await count("SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND value = (slice_index * 3)::text", [jobId])).toBe(SLICES);
    expect(await count("SELECT count(*) AS n FROM jobs WHERE id = $1 AND status = 'finished' AND computed = total", [jobId])).toBe(1);

    // Every accepted slice paid exactly once (one bank payment per slice, each payee credited what
    // the scheduler priced, the payer debited credits + fees); the hold released.
    const ledger = await expectLedgerBalanced({ schedulerDb, bankDb, bankUrl: bank.url, jobId, slices: SLICES, owner, payees: earnings, before });
    console.log(`[redis-loss] ${SLICES} results stored once and right; ${ledger.payments} payments, one per slice, on hold ${ledger.holdId}; ` +
      `payer debited ${ledger.debited} = credits ${ledger.credited} + fees ${ledger.fees}; hold released`);
    expect(recoveries).toHaveLength(2);
    for (const recovery of recoveries) expect(recovery.resultMs).toBeLessThan(15_000);
  }, 240_000);

  it('rebuilds a 100,000-slice job with 66,666 slices leased but unanswered in one pass, and the job completes', async () => {
    // The first test's workers leave: nothing computes this job until Redis has been rebuilt.
    await Promise.all(workers.splice(0).map((worker) => worker.stop()));
    const total = 100_000;
    const job = commune!.compute.for(0, total - 1, (i: number) => progress(1) && i * 3);
    const accepted = new Promise<void>((resolve) => job.once('accepted', () => resolve()));
    const run = job.exec();
    run.catch(() => undefined);
    deployed.push(job);
    await accepted;
    const jobId = job.id!;
    // Postgres as a run that leased every slice (the lease journal, tasks of 50) and got a result for every third one leaves it.
    await schedulerDb.query('INSERT INTO slice_leases (job_id, first_slice, last_slice) SELECT $1, s, least(s + 49, $2 - 1) FROM generate_series(0, $2 - 1, 50) AS s', [jobId, total]);
    const seeded = await schedulerDb.query(
      "INSERT INTO slice_results (job_id, slice_index, value, worker_id, elapsed_ms) SELECT $1, s, (s * 3)::text, 'w_seeded', 1 FROM generate_series(0, $2 - 1, 3) AS s",
      [jobId, total],
    );
    await schedulerDb.query('UPDATE jobs SET computed = $2 WHERE id = $1', [jobId, seeded.rowCount]);
    const unanswered = total - seeded.rowCount!;
    const logBefore = scheduler.output().length;
    const recoveriesLogged = [...scheduler.output().matchAll(/Redis lost its data: [^"]*? in (\d+) ms/g)].length;
    const { upAt } = await restartRedis();
    const probe = new Redis(env.REDIS_URL!, { maxRetriesPerRequest: 3 });
    try {
      let seen = '';
      const rebuiltAt = await waitFor('the job rebuilt in Redis', async () => {
        const [cursor, queued] = await Promise.all([probe.hget(`${env.REDIS_PREFIX}:job:${jobId}`, 'cursor'), probe.llen(`${env.REDIS_PREFIX}:job:${jobId}:requeue`)]);
        seen = `cursor ${cursor}, ${queued} queued`;
        return cursor === String(total) && queued === unanswered ? Date.now() : null;
      }, 30_000, 20).catch((error: Error) => {
        const log = scheduler.output().slice(logBefore).split('\n').filter((l) => /Redis|rebuilt|reconcile|recovery/.test(l)).slice(-10).join('\n');
        throw new Error(`${error.message}; Redis has ${seen}; scheduler said:\n${log}`);
      });
      // The scheduler logs its recovery (and how long it took) once it is done.
      const recoveryLines = () => [...scheduler.output().matchAll(/Redis lost its data: [^"]*? in (\d+) ms/g)];
      const line = await waitFor('the scheduler to log its recovery', () => (recoveryLines().length > recoveriesLogged ? recoveryLines().at(-1) : null), 10_000, 20);
      console.log(`[redis-loss] 100,000-slice job, ${unanswered} slices leased without a result (${Math.ceil(unanswered / 2)} ranges): ` +
        `restart -> rebuilt in Redis ${rebuiltAt - upAt} ms; the scheduler's recovery took ${line[1]} ms`);
      expect(rebuiltAt - upAt).toBeLessThan(10_000);
    } finally {
      probe.disconnect();
    }
    for (const account of [Wallet.createRandom().address, Wallet.createRandom().address]) workers.push(spawnWorker(scheduler.url, 2, ['--earnings', account]));
    await within(run, 75_000, 'the 100,000-slice job to complete');
    expect(await count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1', [jobId])).toBe(total);
    expect(await count('SELECT count(*) AS n FROM slice_results WHERE job_id = $1 AND value = (slice_index * 3)::text', [jobId])).toBe(total);
    expect(await count("SELECT count(*) AS n FROM jobs WHERE id = $1 AND status = 'finished' AND computed = total", [jobId])).toBe(1);
  }, 150_000);

  it('credits a bridge deposit made after Redis lost everything (the bridge schedules are created again)', async () => {
    const confirmations = 3;
    const gas = { gasLimit: 200_000 };
    const chain: LocalChain = await startLocalChain({ port: 0, mining: 'manual' });
    cleanups.push(() => chain.stop());
    const provider: JsonRpcProvider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 20 });
    cleanups.push(async () => provider.destroy());
    const operator = new Wallet(chain.accounts[0]!, provider);
    const depositor = new Wallet(chain.accounts[1]!, provider);
    const mined = async (sending: Promise<ContractTransactionResponse>) => {
      const transaction = await sending;
      await chain.mine(1);
      return transaction.wait();
    };
    const deploying = deployContracts(operator);
    const miner = setInterval(() => void chain.mine(1).catch(() => undefined), 20);
    const contracts = await deploying.finally(() => clearInterval(miner));
    await mined(contracts.token.mint(depositor.address, parseUnits('100', 18), gas));
    const configDir = mkdtempSync(join(tmpdir(), 'commune-redis-loss-bridge-'));
    cleanups.push(async () => rmSync(configDir, { recursive: true, force: true }));
    const configFile = join(configDir, 'chain.json');
    writeBridgeConfig(configFile, {
      rpcUrl: chain.url, chainId: chain.chainId, token: contracts.addresses.token, vault: contracts.addresses.vault,
      operatorKey: chain.accounts[0]!, startBlock: contracts.deployBlock,
    });
    const bridgeEnv: Record<string, string> = {
      ...isolatedEnvironment({ REDIS_URL: env.REDIS_URL!, BANK_SERVICE_TOKEN: env.BANK_SERVICE_TOKEN!, NODE_OPTIONS: '' }),
      BRIDGE_CONFIG_FILE: configFile, BRIDGE_CONFIRMATIONS: String(confirmations), BRIDGE_POLL_INTERVAL_MS: '200',
    };
    cleanups.push(() => dropIsolated(bridgeEnv));
    const bridgeBank = await spawnBank(bridgeEnv, await freePort());
    cleanups.push(() => bridgeBank.stop());
    const bridgeSchedules = () => schedulers('bridge', `${bridgeEnv.REDIS_PREFIX}:bull`);
    const expected = ['bridge-scan-deposits', 'bridge-send-withdrawals'];
    await waitFor('the bridge schedules at boot', async () => (await bridgeSchedules()).join() === expected.join(), 15_000, 100);

    const { upAt } = await restartRedis();
    const schedulesBack = await waitFor('the bridge schedules after the loss', async () => ((await bridgeSchedules()).join() === expected.join() ? Date.now() : null), 15_000, 50);
    // The deposit is made after the loss: only a re-created scan can credit it.
    const account = Wallet.createRandom().address;
    const amount = parseUnits('7', 18);
    const asDepositor = attachContracts(contracts.addresses, depositor);
    await mined(asDepositor.token.approve(contracts.addresses.vault, amount, gas));
    await mined(asDepositor.vault.deposit(amount, account, gas));
    await chain.mine(confirmations);
    const confirmedAt = Date.now();
    const creditedAt = await waitFor('the deposit credited after the loss', async () => {
      return (await balanceOf(bridgeBank.url, account)) === amount ? Date.now() : null;
    }, 30_000, 50);
    console.log(`[redis-loss] bridge: restart -> schedules back ${schedulesBack - upAt} ms; a deposit made after the loss credited ${creditedAt - confirmedAt} ms after its confirmations`);
  }, 90_000);
});

declare function progress(value?: number | string): boolean;
