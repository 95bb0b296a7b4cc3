import { Wallet, type Signer } from 'ethers';
import { BigNumber } from 'bignumber.js';
import { SignedKind, signRequest, type DeployReply, type JobEndEvent, type JobStatus, type Task, type TaskGrant } from '@commune/protocol';
import { startBank, LedgerService, type BankApp } from '../../bank/src/index.js';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { LeaseRepository } from '../src/dispatch/lease.repository.js';
import { PaymentsService } from '../src/payments/payments.service.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../test/support/services.js';
import { signedDeploy, signedFetch } from '../../../test/support/signing.js';
import { connectClient, connectWorker, request, type TestClientSocket, type TestWorkerSocket } from '../../../test/support/sockets.js';
import { io } from 'socket.io-client';
import { freePort } from '../../../test/support/processes.js';

const units = (dcc: string) => new BigNumber(dcc).times('1e18').toFixed(0);

/**
 * Paid computation end to end against a real bank (same Postgres and Redis, its own schema):
 * escrow on deploy, one payment per accepted slice, settlement in batches, the hold's rest
 * released at the end, ENOFUNDS -> deposit -> resume.
 */
describe('paid jobs (scheduler + bank, real Postgres and Redis)', () => {
  const env = isolatedEnvironment({ SETTLEMENT_INTERVAL_MS: '100', ESCROW_SLICES: '4', MARKET_RATE_DCC_PER_SECOND: '1', MINIMUM_SLICE_PAYMENT_DCC: '0.01' });
  const bankEnv: Record<string, string> = { ...env, DATABASE_SCHEMA: `${env.DATABASE_SCHEMA}_bank`, REDIS_PREFIX: `${env.REDIS_PREFIX}_bank`, BANK_SERVICE_TOKEN: 'test-service-token-0123456789abcdef' };
  let bank: BankApp;
  let scheduler: SchedulerApp;
  let ledger: LedgerService;
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];
  let minted = 0;

  beforeAll(async () => {
    bankEnv.PORT = String(await freePort()); // fixed, so the bank can restart where the scheduler expects it
    bank = await startBank(bankEnv);
    ledger = bank.app.get(LedgerService);
    scheduler = await startScheduler({ ...env, BANK_URL: bank.url, BANK_SERVICE_TOKEN: 'test-service-token-0123456789abcdef' });
  }, 30_000);
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await scheduler?.close();
    await bank?.close();
    await dropIsolated(env);
    await dropIsolated(bankEnv);
  });

  async function fund(address: string, dcc: string) {
    await ledger.mint({ idempotencyKey: `test-mint-${minted++}-${Date.now()}`, to: address, amount: units(dcc) });
  }
  async function balance(address: string): Promise<string> {
    const response = await fetch(`${bank.url}/accounts/${address}`);
    return ((await response.json()) as { balance: string }).balance;
  }
  async function paidWorker(id: string, earnings: string): Promise<TestWorkerSocket> {
    const socket: TestWorkerSocket = io(`${scheduler.url}/worker`, { transports: ['websocket'], forceNew: true, auth: { workerId: id, sandboxes: 1, earnings } });
    await new Promise<void>((resolve, reject) => { socket.once('connect', () => resolve()); socket.once('connect_error', reject); });
    sockets.push(socket);
    return socket;
  }
  /** Every task of the job in one grant: a grant may hold several (maxTasksPerGrant), and each must be completed or its slices stay leased. */
  async function lease(worker: TestWorkerSocket, jobId: string, maxSlices: number): Promise<Task[]> {
    try {
      return await waitFor(`a task of ${jobId}`, async () => {
        const tasks = (await request<TaskGrant>(worker, 'task:request', { maxSlices })).tasks.filter((t) => t.jobId === jobId);
        return tasks.length > 0 ? tasks : null;
      });
    } catch (error) {
      // Say what dispatch saw, so a failure here tells which side stalled (escrow, queue, leases).
      const { Redis } = await import('ioredis');
      const redis = new Redis(env.REDIS_URL!);
      const key = `${env.REDIS_PREFIX}:job:${jobId}`;
      const [job, requeue, ready] = await Promise.all([redis.hgetall(key), redis.lrange(`${key}:requeue`, 0, -1), redis.zrange(`${env.REDIS_PREFIX}:ready`, '0', '-1')]);
      redis.disconnect();
      // The job's row as stored (GET /jobs/:id needs the owner, whom this helper does not know).
      const pg = (await import('pg')).default;
      const db = new pg.Client({ connectionString: env.DATABASE_URL });
      await db.connect();
      const status = (await db.query(`SELECT status, total, computed, escrowed_slices, failure_code FROM "${env.DATABASE_SCHEMA}".jobs WHERE id = $1`, [jobId]).finally(() => db.end())).rows[0];
      throw new Error(`${(error as Error).message}; redis job ${JSON.stringify(job)}, requeue ${JSON.stringify(requeue)}, ready ${JSON.stringify(ready)}, status ${JSON.stringify(status)}`);
    }
  }
  /**
   * Reports each slice of `tasks` as taking `elapsedMs`, after really holding the lease that long:
   * the scheduler pays no more time than it saw between lease and result (x the worker's 1 sandbox).
   */
  async function complete(worker: TestWorkerSocket, tasks: Task[], elapsedMs = 1) {
    for (const task of tasks) {
      await new Promise((resolve) => setTimeout(resolve, elapsedMs * task.slices.length + 5));
      await request(worker, 'task:results', { taskId: task.taskId, jobId: task.jobId, outcomes: task.slices.map((s) => ({ sliceIndex: s.sliceIndex, status: 'ok', value: s.datum, elapsedMs })) });
    }
  }
  const slicesOf = (tasks: Task[]) => tasks.flatMap((task) => task.slices);
  async function action(client: TestClientSocket, owner: Signer, jobId: string, kind: 'cancel' | 'resume' | 'escrow', amount?: string) {
    const body = { action: kind, jobId, nonce: `n_${kind}_${Date.now()}_${Math.random().toString(36).slice(2)}`, expiresAt: Date.now() + 60_000, ...(amount ? { amount } : {}) };
    return request<{ ok: boolean; code?: string; status?: JobStatus }>(client, 'job:action', { request: body, signature: await signRequest(owner, SignedKind.jobAction, body) });
  }
  async function ended(client: TestClientSocket, jobId: string): Promise<JobEndEvent> {
    return new Promise((resolve) => client.on('job:end', (event) => event.jobId === jobId && resolve(event)));
  }

  it('pays each of n slices exactly once, even when a worker vanishes and its slices rerun elsewhere', async () => {
    const owner = Wallet.createRandom();
    const earningsA = Wallet.createRandom().address;
    const earningsB = Wallet.createRandom().address;
    await fund(owner.address, '100');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '0.5', inputSet: { kind: 'range', range: { start: 0, end: 9 } } }));
    if (!reply.ok) throw new Error(reply.message);
    const end = ended(client, reply.jobId);
    // Escrow covers ESCROW_SLICES (4) slices at a time: 4 x 0.5 DCC held from the owner.
    await waitFor('the first escrow', async () => (await balance(owner.address)) === units('98'));
    const workerA = await paidWorker('w_paid_a_0001', earningsA);
    const first = await lease(workerA, reply.jobId, 3);
    workerA.disconnect(); // killed: its 3 slices go back and run elsewhere
    const workerB = await paidWorker('w_paid_b_0001', earningsB);
    let done = 0;
    while (done < 10) {
      const tasks = await lease(workerB, reply.jobId, 10);
      await complete(workerB, tasks, 100); // 0.1 s at 1 DCC/s = 0.1 DCC per slice, under the 0.5 offer
      done += slicesOf(tasks).length;
    }
    expect(slicesOf(first)).toHaveLength(3);
    expect((await end).status.runStatus).toBe('finished');
    // 10 slices x 0.1 DCC to B, nothing to A; the rest of the hold goes back to the owner.
    await waitFor('settlement and release', async () => (await balance(earningsB)) === units('1') && (await balance(owner.address)) === units('99'), 15_000);
    expect(await balance(earningsA)).toBe('0');
    const status = (await signedFetch(owner, scheduler.url, 'GET', `/jobs/${reply.jobId}`)).body as JobStatus;
    expect(status.payment).toEqual({ offerPerSlice: '0.5', escrowedSlices: 10, paid: units('1') });
  }, 30_000);

  it('gives workers with no earnings account or a higher minimum wage no paid work', async () => {
    const owner = Wallet.createRandom();
    await fund(owner.address, '10');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '0.2', inputSet: { kind: 'array', values: [1] } }));
    if (!reply.ok) throw new Error(reply.message);
    await waitFor('the escrow', async () => (await balance(owner.address)) === units('9.8'));
    const unpaid = await connectWorker(scheduler.url, 'w_nopay_00001');
    sockets.push(unpaid);
    const greedy: TestWorkerSocket = io(`${scheduler.url}/worker`, { transports: ['websocket'], forceNew: true, auth: { workerId: 'w_greedy_0001', sandboxes: 1, earnings: Wallet.createRandom().address, minWage: '0.3' } });
    sockets.push(greedy);
    await new Promise<void>((resolve) => greedy.once('connect', () => resolve()));
    expect((await request<TaskGrant>(unpaid, 'task:request', { maxSlices: 5 })).tasks.filter((t) => t.jobId === reply.jobId)).toEqual([]);
    expect((await request<TaskGrant>(greedy, 'task:request', { maxSlices: 5 })).tasks.filter((t) => t.jobId === reply.jobId)).toEqual([]);
    await action(client, owner, reply.jobId, 'cancel');
  });

  it('releases the rest of the hold when a job is cancelled', async () => {
    const owner = Wallet.createRandom();
    const earnings = Wallet.createRandom().address;
    await fund(owner.address, '10');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '1', inputSet: { kind: 'range', range: { start: 0, end: 99 } } }));
    if (!reply.ok) throw new Error(reply.message);
    await waitFor('the escrow of 4 slices', async () => (await balance(owner.address)) === units('6'));
    const worker = await paidWorker('w_cancel_0001', earnings);
    const task = await lease(worker, reply.jobId, 2);
    await complete(worker, task, 250); // 2 slices x 0.25 DCC
    expect(await action(client, owner, reply.jobId, 'cancel')).toMatchObject({ ok: true, status: { runStatus: 'cancelled' } });
    await waitFor('payments and the release', async () => (await balance(earnings)) === units('0.5') && (await balance(owner.address)) === units('9.5'), 15_000);
  });

  it('pauses a job for ENOFUNDS, and a deposit then resume() completes it', async () => {
    const owner = Wallet.createRandom();
    const earnings = Wallet.createRandom().address;
    await fund(owner.address, '1');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const statuses: JobStatus[] = [];
    client.on('job:status', (status) => statuses.push(status));
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '0.5', inputSet: { kind: 'range', range: { start: 0, end: 2 } } }));
    if (!reply.ok) throw new Error(reply.message);
    // 3 slices x 0.5 = 1.5 DCC to escrow, the account has 1.
    const paused = await waitFor('the ENOFUNDS status', () => statuses.find((s) => s.jobId === reply.jobId && s.runStatus === 'paused'));
    expect(paused.failure).toMatchObject({ code: 'ENOFUNDS', fundsRequired: units('0.5') });
    const worker = await paidWorker('w_funds_00001', earnings);
    expect((await request<TaskGrant>(worker, 'task:request', { maxSlices: 5 })).tasks.filter((t) => t.jobId === reply.jobId)).toEqual([]);
    expect(await action(client, owner, reply.jobId, 'resume')).toMatchObject({ ok: false, code: 'ENOFUNDS' });
    await fund(owner.address, '1');
    expect(await action(client, owner, reply.jobId, 'resume')).toMatchObject({ ok: true, status: { runStatus: 'running', failure: null } });
    const end = ended(client, reply.jobId);
    const task = await lease(worker, reply.jobId, 5);
    await complete(worker, task, 10);
    expect((await end).status.runStatus).toBe('finished');
    // 3 slices at the 0.01 DCC floor; the rest of the 1.5 DCC hold comes back.
    await waitFor('settlement and release', async () => (await balance(earnings)) === units('0.03') && (await balance(owner.address)) === units('1.97'), 15_000);
  }, 30_000);

  it('never lowers the escrow dispatch sees when escrow steps finish out of order, and re-escrow heals a lost Redis update', async () => {
    const owner = Wallet.createRandom();
    await fund(owner.address, '100');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '0.5', inputSet: { kind: 'range', range: { start: 0, end: 99 } } }));
    if (!reply.ok) throw new Error(reply.message);
    const leases = scheduler.app.get(LeaseRepository);
    await waitFor('the first escrow', async () => (await leases.escrowState(reply.jobId))?.escrowed === 4);
    await leases.setEscrowed(reply.jobId, 12);
    await leases.setEscrowed(reply.jobId, 8); // a slower, older step finishing last
    expect((await leases.escrowState(reply.jobId))?.escrowed).toBe(12);
    // Redis behind Postgres (an update lost with Redis): the next settlement run brings it up to what the hold covers.
    const { Redis } = await import('ioredis');
    const redis = new Redis(env.REDIS_URL!);
    await redis.hset(`${env.REDIS_PREFIX}:job:${reply.jobId}`, 'escrowed', '0');
    redis.disconnect();
    await waitFor('re-escrow to restore the escrow dispatch sees', async () => ((await leases.escrowState(reply.jobId))?.escrowed ?? 0) >= 4);
    const worker = await paidWorker('w_heal_000001', Wallet.createRandom().address);
    expect(slicesOf(await lease(worker, reply.jobId, 4))).toHaveLength(4);
    await action(client, owner, reply.jobId, 'cancel');
  });

  // Last: it restarts the bank.
  it('settles payments recorded while the bank was down once it is back, each exactly once', async () => {
    const owner = Wallet.createRandom();
    const earnings = Wallet.createRandom().address;
    await fund(owner.address, '10');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '1', inputSet: { kind: 'range', range: { start: 0, end: 2 } } }));
    if (!reply.ok) throw new Error(reply.message);
    await waitFor('the escrow of 3 slices', async () => (await balance(owner.address)) === units('7'));
    const worker = await paidWorker('w_restart_001', earnings);
    const task = await lease(worker, reply.jobId, 3);
    const end = ended(client, reply.jobId);
    await bank.close();
    // Accepted while the bank is down: the results and their prices are stored, settlement fails and is retried.
    await complete(worker, task, 200);
    expect((await end).status.runStatus).toBe('finished');
    await new Promise((resolve) => setTimeout(resolve, 1000)); // ~10 settlement runs against a closed port
    bank = await startBank(bankEnv);
    ledger = bank.app.get(LedgerService);
    await waitFor('settlement and release after the restart', async () => (await balance(earnings)) === units('0.6') && (await balance(owner.address)) === units('9.4'), 15_000);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // more settlement runs: nothing is paid twice
    expect(await balance(earnings)).toBe(units('0.6'));
    expect(await balance(owner.address)).toBe(units('9.4'));
  }, 40_000);

  it('gives a running paid job its slice-time samples back from its payments after Redis lost them', async () => {
    const owner = Wallet.createRandom();
    await fund(owner.address, '100');
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    const reply = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '5', inputSet: { kind: 'range', range: { start: 0, end: 19 } } }));
    if (!reply.ok) throw new Error(reply.message);
    const worker = await paidWorker('w_reseed_00001', Wallet.createRandom().address);
    let done = 0;
    while (done < 10) {
      const tasks = await lease(worker, reply.jobId, 10 - done);
      await complete(worker, tasks, 100); // 0.1 DCC each at 1 DCC/s: each payment stands for 100 ms
      done += slicesOf(tasks).length;
    }
    const { Redis } = await import('ioredis');
    const redis = new Redis(env.REDIS_URL!);
    try {
      const key = `${env.REDIS_PREFIX}:job:${reply.jobId}:slicetimes`;
      await waitFor('10 samples kept', async () => (await redis.llen(key)) === 10);
      await redis.del(key); // what a Redis that lost its data leaves of them
      const payments = scheduler.app.get(PaymentsService);
      expect(await payments.reseedSliceTimes()).toBeGreaterThanOrEqual(1);
      const samples = (await redis.lrange(key, 0, -1)).map(Number);
      expect(samples).toHaveLength(10);
      for (const ms of samples) expect(ms).toBeCloseTo(100, 0);
      // Another replica recovering from the same loss adds nothing: the job has its samples.
      await payments.reseedSliceTimes();
      expect(await redis.llen(key)).toBe(10);
      // The bound holds again at once: a claimed 20 s slice (held 1.1 s) is paid 1 s, 10 x the median, not the
      // 1.1 s it would be paid with no samples (the offer, 5 DCC, is above both).
      const [task] = await lease(worker, reply.jobId, 1);
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await request(worker, 'task:results', { taskId: task!.taskId, jobId: task!.jobId, outcomes: task!.slices.map((slice) => ({ sliceIndex: slice.sliceIndex, status: 'ok', value: slice.datum, elapsedMs: 20_000 })) });
      const pg = (await import('pg')).default;
      const db = new pg.Client({ connectionString: env.DATABASE_URL });
      await db.connect();
      const paid = await db
        .query<{ payment: string }>(`SELECT payment::text FROM "${env.DATABASE_SCHEMA}".slice_results WHERE job_id = $1 AND slice_index = $2`, [reply.jobId, task!.slices[0]!.sliceIndex])
        .finally(() => db.end());
      expect(paid.rows[0]?.payment).toBe(units('1'));
    } finally {
      redis.disconnect();
      await action(client, owner, reply.jobId, 'cancel').catch(() => undefined);
    }
  }, 30_000);
});
