import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUnits, Wallet } from 'ethers';
import { io, type Socket } from 'socket.io-client';
import { init } from '@commune/client';
import { Limits, type Task, type TaskGrant } from '@commune/protocol';
import { startBank, LedgerService, type BankApp } from '../../apps/bank/src/index.js';
import { freePort, spawnScheduler, type RunningProcess } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../support/services.js';
import { connectClient, request } from '../support/sockets.js';

type Reply = { ok?: boolean; code?: string; message?: string; [key: string]: unknown };
type Deployed = { id: string; settled: Promise<{ ok: true } | { ok: false; error: unknown }>; cancel(): Promise<void> };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const units = (dcc: string) => parseUnits(dcc, 18).toString();
/** `[[[...0...]]]`, `depth` levels, as JSON text (built as text: no recursive encoder on our side either). */
const deepJson = (depth: number, leaf = '0') => '['.repeat(depth) + leaf + ']'.repeat(depth);

/**
 * The scheduler facing hostile workers, over real socket.io against a real scheduler process
 * (128 MB heap, as `pnpm start` runs it) and a real bank: every attack of issue 7 on the /worker
 * side is refused with its named code, and the scheduler stays alive and serving.
 */
describe('hostile workers (security, e2e)', () => {
  const env = isolatedEnvironment({
    LEASE_TIMEOUT_MS: '2000',
    LEASE_SWEEP_INTERVAL_MS: '200',
    MAX_ATTEMPTS_PER_SLICE: '2',
    SETTLEMENT_INTERVAL_MS: '100',
    ESCROW_SLICES: '40',
    MARKET_RATE_DCC_PER_SECOND: '1',
    MINIMUM_SLICE_PAYMENT_DCC: '0.001',
    BANK_SERVICE_TOKEN: 'hostile-worker-service-token-0123456789abcdef',
    NODE_OPTIONS: '--max-old-space-size=128',
  });
  const bankEnv: Record<string, string> = { ...env, DATABASE_SCHEMA: `${env.DATABASE_SCHEMA}_bank`, REDIS_PREFIX: `${env.REDIS_PREFIX}_bank`, NODE_OPTIONS: '' };
  const home = mkdtempSync(join(tmpdir(), 'commune-hostile-worker-'));
  let bank: BankApp;
  let scheduler: RunningProcess & { url: string };
  let commune: Awaited<ReturnType<typeof init>>;
  const sockets: Socket[] = [];
  const jobs: Deployed[] = [];

  beforeAll(async () => {
    bankEnv.PORT = String(await freePort());
    bank = await startBank(bankEnv);
    scheduler = await spawnScheduler({ ...env, BANK_URL: bank.url }, await freePort());
    commune = await init({ scheduler: scheduler.url, home });
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await Promise.all(jobs.map((job) => job.cancel().catch(() => undefined)));
    await scheduler?.stop();
    await bank?.close();
    await dropIsolated(env);
    await dropIsolated(bankEnv);
  }, 30_000);

  /** The scheduler process is alive and its /health answers ok. */
  async function expectServing(): Promise<void> {
    expect(scheduler.child.exitCode).toBeNull();
    expect(scheduler.child.signalCode).toBeNull();
    const health = await fetch(`${scheduler.url}/health`);
    expect(health.status).toBe(200);
  }

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${scheduler.url}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(name + ' '));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  /** A job deployed through the SDK (as its owner would); nothing runs it but the sockets of each test. */
  async function deploy(count: number, options: { offer?: string } = {}): Promise<Deployed> {
    const job = commune.compute.for(0, count - 1, (i: number) => i);
    const accepted = new Promise<void>((resolve) => job.once('accepted', () => resolve()));
    const run = options.offer ? job.exec(Number(options.offer)) : job.exec();
    const settled = run.then(() => ({ ok: true as const }), (error: unknown) => ({ ok: false as const, error }));
    await accepted;
    const deployed: Deployed = { id: job.id!, settled, cancel: () => job.cancel() };
    jobs.push(deployed);
    return deployed;
  }

  async function worker(workerId: string, auth: Record<string, unknown> = {}): Promise<Socket> {
    const socket = io(`${scheduler.url}/worker`, {
      transports: ['websocket'], forceNew: true, reconnection: false,
      auth: { workerId, sandboxes: 1, capabilities: {}, ...auth },
    });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${workerId} did not connect`)), 5000);
      socket.once('connect', () => { clearTimeout(timer); resolve(); });
      socket.once('connect_error', (error) => { clearTimeout(timer); reject(error); });
    });
    return socket;
  }

  /** Whether the scheduler drops the socket within `ms` (a refused hello, a protocol violation). */
  function dropped(socket: Socket, ms = 3000): Promise<boolean> {
    if (!socket.connected && !socket.active) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      socket.once('disconnect', () => { clearTimeout(timer); resolve(true); });
      socket.once('connect_error', () => { clearTimeout(timer); resolve(true); });
    });
  }

  /**
   * Sends `[event, payload]` as a raw socket.io packet whose payload is JSON text we built, with
   * ack id `ackId`, and resolves with the scheduler's ack (or 'closed' when it drops the socket).
   */
  function rawEmit(socket: Socket, event: string, payloadJson: string, ackId: number, timeoutMs = 10_000): Promise<Reply | 'closed'> {
    const engine = socket.io.engine;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack for raw ${event}`)), timeoutMs);
      const prefix = `3/worker,${ackId}[`;
      const onMessage = (data: unknown) => {
        if (typeof data !== 'string' || !data.startsWith(prefix)) return;
        clearTimeout(timer);
        engine.off('message', onMessage);
        resolve((JSON.parse(data.slice(prefix.length - 1)) as Reply[])[0]!);
      };
      engine.on('message', onMessage);
      socket.once('disconnect', () => { clearTimeout(timer); resolve('closed'); });
      engine.write(`2/worker,${ackId}[${JSON.stringify(event)},${payloadJson}]`);
    });
  }

  /** Asks for work until it holds `count` slices of `jobId` (tasks of other jobs it gets stay leased to it, untouched). */
  async function lease(socket: Socket, jobId: string, count: number): Promise<Task[]> {
    const mine: Task[] = [];
    await waitFor(`${count} slices of ${jobId}`, async () => {
      const reply = await request<TaskGrant & Reply>(socket, 'task:request', { maxSlices: count - slicesOf(mine).length });
      if (reply.ok === false) throw new Error(`${reply.code}: ${reply.message}`);
      mine.push(...reply.tasks.filter((task) => task.jobId === jobId));
      return slicesOf(mine).length >= count;
    }, 10_000, 50);
    return mine;
  }
  const cancel = (jobId: string) => jobs.find((job) => job.id === jobId)!.cancel().catch(() => undefined);
  const slicesOf = (tasks: Task[]) => tasks.flatMap((task) => task.slices.map((slice) => slice.sliceIndex));

  // ---------------------------------------------------------------- crashes

  it('refuses a 40 kB task:events nested 20,000 deep (no lease needed) with ETOODEEP and stays up', async () => {
    const socket = await worker('w_deep_events_01');
    const payload = `{"jobId":"j_0000000000aa","custom":[{"sliceIndex":0,"event":"x","value":${deepJson(20_000)}}]}`;
    expect(payload.length).toBeGreaterThan(40_000);
    expect(await rawEmit(socket, 'task:events', payload, 1)).toMatchObject({ ok: false, code: 'ETOODEEP' });
    expect(await rawEmit(socket, 'task:results', `{"taskId":"t_0000000000aa","jobId":"j_0000000000aa","outcomes":[{"sliceIndex":0,"status":"ok","elapsedMs":1,"value":${deepJson(20_000)}}]}`, 2))
      .toMatchObject({ ok: true, accepted: [], refused: [{ sliceIndex: 0, code: 'ENOTLEASED' }] });
    // 1,000,000 levels (2 MB of brackets): the iterative bound walks it; nothing recurses.
    expect(await rawEmit(socket, 'task:request', deepJson(1_000_000), 3)).toMatchObject({ ok: false, code: 'ETOODEEP' });
    await expectServing();
  }, 30_000);

  it("survives socket.io's binary path: a deep packet with a binary attachment, and too many attachments", async () => {
    const deepBinary = await worker('w_deep_binary_1');
    // socket.io-parser rebuilds attachments recursively: 20,000 levels overflow its stack, which it must survive.
    deepBinary.io.engine.write(`51-/worker,4["task:events",{"jobId":"j_0000000000aa","custom":[{"sliceIndex":0,"event":"x","value":${deepJson(20_000, '{"_placeholder":true,"num":0}')}}]}]`);
    deepBinary.io.engine.write(Buffer.from([1, 2, 3]));
    expect(await dropped(deepBinary)).toBe(true);
    const manyAttachments = await worker('w_attachments_1');
    manyAttachments.io.engine.write('5999999-/worker,5["task:events",{"_placeholder":true,"num":0}]');
    expect(await dropped(manyAttachments)).toBe(true);
    await expectServing();
  }, 30_000);

  it("survives an anonymous emit('error', null) on /client and on /worker", async () => {
    const client = await connectClient(scheduler.url);
    sockets.push(client);
    client.io.engine.write('2/client,["error",null]');
    client.io.engine.write('2/client,["error"]');
    const socket = await worker('w_error_event_1');
    socket.io.engine.write('2/worker,["error",null]');
    socket.io.engine.write('2/worker,["error",{"message":null}]');
    await sleep(300);
    await expectServing();
  });

  it('drops a message over Limits.maxMessageBytes before parsing it', async () => {
    const socket = await worker('w_too_big_00001');
    socket.io.engine.write(`2/worker,["task:events",{"jobId":"j_0000000000aa","console":[],"pad":"${'x'.repeat(Limits.maxMessageBytes + 1024)}"}]`);
    expect(await dropped(socket)).toBe(true);
    await expectServing();
  }, 30_000);

  it('holds many concurrent near-limit messages (24 sockets x 3.9 MB) with a 128 MB heap', async () => {
    const { id } = await deploy(48);
    const workers = await Promise.all(Array.from({ length: 24 }, (_, i) => worker(`w_flood_${String(i).padStart(7, '0')}`)));
    const tasks = await Promise.all(workers.map((socket) => lease(socket, id, 2)));
    // Each message: two results just under maxResultBytes and padding to ~3.9 MB in a third, refused one.
    const near = 'r'.repeat(Limits.maxResultBytes - 100);
    const pad = 'p'.repeat(Math.floor(Limits.maxMessageBytes * 0.93) - 2 * near.length);
    const replies = await Promise.all(workers.map((socket, i) => {
      const [task] = tasks[i]!;
      const outcomes = task!.slices.map((slice) => ({ sliceIndex: slice.sliceIndex, status: 'ok', elapsedMs: 1, value: near }));
      outcomes.push({ sliceIndex: 10_000, status: 'ok', elapsedMs: 1, value: pad });
      return request<Reply>(socket, 'task:results', { taskId: task!.taskId, jobId: id, outcomes }, 30_000).catch((error: Error) => ({ ok: false, code: error.message }));
    }));
    await expectServing();
    // Every message was answered (accepted or refused with a named code), none lost to a crash.
    for (const reply of replies) expect(reply.ok === true || reply.code === 'EUNAVAILABLE').toBe(true);
    expect(replies.filter((reply) => reply.ok === true).length).toBeGreaterThan(0);
    // Those over maxLargeMessageBytesInFlight were refused at once, to be sent again.
    expect(replies.filter((reply) => reply.code === 'EUNAVAILABLE').length).toBeGreaterThan(0);
    for (const socket of workers) socket.disconnect();
    await cancel(id);
  }, 60_000);

  // ---------------------------------------------------------------- poison results

  it('counts a result nested 20,000 deep as a failed attempt (ETOODEEP): maxAttemptsPerSlice ends the job', async () => {
    const job = await deploy(1);
    const socket = await worker('w_poison_000001');
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [task] = await lease(socket, job.id, 1);
      const reply = await rawEmit(socket, 'task:results', `{"taskId":"${task!.taskId}","jobId":"${job.id}","outcomes":[{"sliceIndex":0,"status":"ok","elapsedMs":1,"value":${deepJson(20_000)}}]}`, 10 + attempt);
      expect(reply).toMatchObject({ ok: true, accepted: [], refused: [] });
    }
    const settled = await job.settled;
    expect(settled.ok).toBe(false);
    expect((settled as { error: { code?: string } }).error).toMatchObject({ code: 'ETOODEEP' });
    await expectServing();
  }, 30_000);

  it('counts a result over Limits.maxResultBytes as a failed attempt (ERESULTTOOBIG)', async () => {
    const job = await deploy(1);
    const socket = await worker('w_big_result_01');
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [task] = await lease(socket, job.id, 1);
      const reply = await request<Reply>(socket, 'task:results', {
        taskId: task!.taskId, jobId: job.id, outcomes: [{ sliceIndex: 0, status: 'ok', elapsedMs: 1, value: 'x'.repeat(Limits.maxResultBytes + 1) }],
      });
      expect(reply).toMatchObject({ ok: true, accepted: [], refused: [] });
    }
    expect(await job.settled).toMatchObject({ ok: false, error: { code: 'ERESULTTOOBIG' } });
  }, 30_000);

  // ---------------------------------------------------------------- events from slices not leased

  it("takes console and custom events only from the worker holding a live lease on the event's slice", async () => {
    const job = commune.compute.for(0, 3, (i: number) => i);
    const heard: string[] = [];
    job.on('console', (event: { message?: string }) => heard.push(`console:${event.message}`));
    job.work.on('said', (value: unknown) => heard.push(`custom:${String(value)}`));
    const accepted = new Promise<void>((resolve) => job.once('accepted', () => resolve()));
    const settled = job.exec().then(() => null, () => null);
    await accepted;
    jobs.push({ id: job.id!, settled: settled.then(() => ({ ok: true as const })), cancel: () => job.cancel() });
    const jobId = job.id!;
    const entry = (sliceIndex: number, message: string) => ({ sliceIndex, level: 'log', message });
    const custom = (sliceIndex: number, value: string) => ({ sliceIndex, event: 'said', value });

    const stranger = await worker('w_stranger_0001');
    expect(await request<Reply>(stranger, 'task:events', { jobId, console: [entry(0, 'forged')], custom: [custom(0, 'forged')] }))
      .toMatchObject({ ok: false, code: 'ENOTLEASED' });

    const holder = await worker('w_holder_000001');
    const tasks = await lease(holder, jobId, 2);
    const held = slicesOf(tasks);
    const notHeld = [0, 1, 2, 3].find((s) => !held.includes(s))!;
    // The stranger still cannot speak for the holder's slices, nor the holder for another task's.
    expect(await request<Reply>(stranger, 'task:events', { jobId, console: [entry(held[0]!, 'forged')] })).toMatchObject({ ok: false, code: 'ENOTLEASED' });
    expect(await request<Reply>(holder, 'task:events', {
      jobId, console: [entry(held[0]!, 'genuine'), entry(notHeld, 'forged')], custom: [custom(held[0]!, 'genuine'), custom(notHeld, 'forged')],
    })).toMatchObject({ ok: true, delivered: 2, refused: 2 });
    expect(await request<Reply>(holder, 'task:events', { jobId, taskId: 't_0000000000zz', console: [entry(held[0]!, 'forged')] })).toMatchObject({ ok: false, code: 'ENOTLEASED' });
    await waitFor('the genuine events', () => heard.length >= 2, 5000);
    // After its result the slice is no longer leased: its worker cannot speak for it either.
    await request(holder, 'task:results', { taskId: tasks[0]!.taskId, jobId, outcomes: [{ sliceIndex: held[0]!, status: 'ok', elapsedMs: 1, value: 1 }] });
    expect(await request<Reply>(holder, 'task:events', { jobId, console: [entry(held[0]!, 'late')] })).toMatchObject({ ok: false, code: 'ENOTLEASED' });
    await sleep(300);
    expect(heard.sort()).toEqual(['console:genuine', 'custom:genuine']);
    expect(await metric('commune_worker_events_refused_total')).toBeGreaterThanOrEqual(6);
    await cancel(jobId);
  }, 30_000);

  // ---------------------------------------------------------------- capabilities

  it('bounds declared capabilities by their schema: too deep, too many or too long is refused at connection', async () => {
    let nested: Record<string, unknown> = { gpu: true };
    for (let i = 0; i < 1000; i++) nested = { x: nested };
    const wide = Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, true]));
    for (const capabilities of [nested, wide, { gpu: 'x'.repeat(10_000) }, { engine: { a: { b: { c: true } } } }, { gpu: [1, 2, 3] }]) {
      const socket = io(`${scheduler.url}/worker`, { transports: ['websocket'], forceNew: true, reconnection: false, auth: { workerId: 'w_capability_01', sandboxes: 1, capabilities } });
      sockets.push(socket);
      expect(await dropped(socket, 5000)).toBe(true);
    }
    // Within bounds a declaration is taken (and used only to match requirements, never to price work).
    const declared = await worker('w_capability_02', { capabilities: { gpu: true, engine: { es2022: true, v8: true }, environment: { fdlibm: true } } });
    expect(declared.connected).toBe(true);
    await expectServing();
  }, 30_000);

  // ---------------------------------------------------------------- lease caps and renewal

  it('caps the slices one worker holds leased (ELEASECAP): one socket claiming one sandbox cannot lease a 1,000,000-slice job', async () => {
    const job = await deploy(1_000_000);
    const socket = await worker('w_greedy_000001', { sandboxes: 1 });
    let leased = 0;
    let refusal: Reply | null = null;
    for (let i = 0; i < 40 && refusal === null; i++) {
      const reply = await request<TaskGrant & Reply>(socket, 'task:request', { maxSlices: Limits.maxSlicesPerTask * 16 });
      if (reply.ok === false) refusal = reply;
      else leased += slicesOf(reply.tasks).length;
    }
    expect(leased).toBe(Limits.initialLeasedSlicesPerWorker);
    expect(refusal).toMatchObject({ ok: false, code: 'ELEASECAP' });
    expect(await metric('commune_lease_cap_refusals_total')).toBeGreaterThanOrEqual(1);
    socket.disconnect();
    await cancel(job.id);
    await expectServing();
  }, 30_000);

  it('renews a lease only for results of slices the task holds: refused results do not keep slices leased', async () => {
    const job = await deploy(20);
    const squatter = await worker('w_squatter_0001');
    const tasks = await lease(squatter, job.id, 20);
    expect(slicesOf(tasks)).toHaveLength(20);
    // Every 300 ms a result for a slice the task does not hold, for longer than the 2 s lease.
    const until = Date.now() + 3500;
    while (Date.now() < until) {
      const reply = await request<Reply>(squatter, 'task:results', { taskId: tasks[0]!.taskId, jobId: job.id, outcomes: [{ sliceIndex: 999, status: 'ok', elapsedMs: 1, value: 0 }] });
      expect(reply).toMatchObject({ ok: true, accepted: [], refused: [{ sliceIndex: 999, code: 'ENOTLEASED' }] });
      await sleep(300);
    }
    const other = await worker('w_patient_00001');
    const retaken = await lease(other, job.id, 20);
    expect(slicesOf(retaken).length).toBeGreaterThan(0);
    squatter.disconnect();
    await cancel(job.id);
  }, 30_000);

  // ---------------------------------------------------------------- pay from measured work

  it("pays measured work, not the worker's word: 1e12 ms is bounded by lease-to-result time, and peer outliers are flagged", async () => {
    const ledger = bank.app.get(LedgerService);
    const owner = await commune.wallet.get();
    await ledger.mint({ idempotencyKey: `hostile-mint-${Date.now()}`, to: await owner.getAddress(), amount: units('1000') });
    const job = await deploy(40, { offer: '10' });
    const earnings = Wallet.createRandom().address;
    const balance = async () => ((await (await fetch(`${bank.url}/accounts/${earnings}`)).json()) as { balance: string }).balance;
    /** The liar's payments so far, oldest first (settlement is asynchronous: count them, never assume they are in). */
    const payments = async () =>
      ((await (await fetch(`${bank.url}/accounts/${earnings}/history?limit=100`)).json()) as { entries: Array<{ kind: string; amount: string }> }).entries
        .filter((entry) => entry.kind === 'payment')
        .reverse();
    const liar = await worker('w_liar_00000001', { earnings });

    const report = async (socket: Socket, tasks: Task[], elapsedMs: number) => {
      for (const task of tasks) {
        await request(socket, 'task:results', { taskId: task.taskId, jobId: job.id, outcomes: task.slices.map((s) => ({ sliceIndex: s.sliceIndex, status: 'ok', elapsedMs, value: s.datum })) });
      }
    };
    // 1. Honest peers first (20 ms slices, really waited): they set the job's median. (Lies
    // answered at once first would be kept as samples of a few ms each at their observed time,
    // and a median of those would make the honest 20 ms slices outliers: timing-dependent.)
    const honest = await worker('w_honest_000001', { earnings: Wallet.createRandom().address });
    for (let round = 0; round < 3; round++) {
      const tasks = await lease(honest, job.id, 4);
      await sleep(20 * slicesOf(tasks).length + 5);
      await report(honest, tasks, 20);
    }

    // 2. A lie: 1e12 ms on slices returned at once is worth what was observed (a few ms).
    await report(liar, await lease(liar, job.id, 4), 1e12);
    await waitFor('the four first payments', async () => (await payments()).length === 4, 20_000);
    // 4 slices: far below their 40 DCC offer; each at most the minimum plus the observed seconds at 1 DCC/s.
    expect(BigInt(await balance()) < BigInt(units('0.5'))).toBe(true);
    expect(await metric('commune_payment_time_clamped_total')).toBeGreaterThanOrEqual(4);

    // 3. A slow-walked lie: it waited 1.5 s and claims it, 75x the honest median.
    const outliersBefore = await metric('commune_payment_outliers_total');
    const slow = await lease(liar, job.id, 1);
    await sleep(1500);
    await report(liar, slow, 1500);
    expect(await metric('commune_payment_outliers_total')).toBe(outliersBefore + 1);
    // Paid at 10x the peers' 20 ms median (0.2 DCC), not the 1.5 DCC it claimed.
    await waitFor('the outlier payment', async () => (await payments()).length === 5, 20_000);
    expect((await payments())[4]!.amount).toBe(units('0.2'));
    expect(scheduler.output()).toMatch(/reported times above 10x the job's median/);
    await job.cancel();
    await expectServing();
  }, 60_000);
});
