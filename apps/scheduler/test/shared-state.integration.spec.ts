import { Wallet } from 'ethers';
import {
  applyStateOperation, decodeState, encodeState, StateOperationSchema,
  type DeployReply, type StateChangeEvent, type StateObject, type StateOperationInput, type StateOperationReply, type Task, type TaskGrant,
} from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../test/support/services.js';
import { seededRandom } from '../../../test/support/random.js';
import { signedDeploy } from '../../../test/support/signing.js';
import { connectClient, connectWorker, request, type TestClientSocket, type TestWorkerSocket } from '../../../test/support/sockets.js';

describe('shared state across two scheduler replicas (real Postgres and Redis)', () => {
  const env = isolatedEnvironment({});
  let replicaA: SchedulerApp;
  let replicaB: SchedulerApp;
  const owner = Wallet.createRandom();
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];
  const seed = Number(process.env.TEST_SEED ?? Date.now() % 1_000_000);

  beforeAll(async () => {
    replicaA = await startScheduler(env);
    replicaB = await startScheduler(env);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await replicaA?.close();
    await replicaB?.close();
    await dropIsolated(env);
  });

  async function client(replica: SchedulerApp) {
    const socket = await connectClient(replica.url);
    sockets.push(socket);
    return socket;
  }
  async function worker(id: string, replica: SchedulerApp) {
    const socket = await connectWorker(replica.url, id);
    sockets.push(socket);
    return socket;
  }
  /** Each deployed job's read token (state:get and client state:subscribe need it). */
  const readTokens = new Map<string, string>();
  const readOf = (jobId: string) => ({ jobId, readToken: readTokens.get(jobId) });
  async function deploy(state: StateObject, slices = 100): Promise<string> {
    const socket = await client(replicaA);
    const reply = await request<DeployReply>(socket, 'deploy', await signedDeploy(owner, {
      work: '(i) => i',
      inputSet: { kind: 'range', range: { start: 0, end: slices - 1 } },
      state: encodeState(state),
    }));
    if (!reply.ok) throw new Error(`deploy refused: ${reply.code} ${reply.message}`);
    readTokens.set(reply.jobId, reply.readToken);
    return reply.jobId;
  }
  async function leaseTask(socket: TestWorkerSocket, jobId: string): Promise<Task> {
    return waitFor(`a task of ${jobId}`, async () => {
      const grant = await request<TaskGrant>(socket, 'task:request', { maxSlices: 1 });
      return grant.tasks.find((task) => task.jobId === jobId);
    });
  }
  const operate = (socket: TestWorkerSocket, jobId: string, operation: StateOperationInput) =>
    request<StateOperationReply>(socket, 'state:op', { jobId, operation: StateOperationSchema.parse(operation) }, 20_000);

  it(`many concurrent increments from workers on both replicas sum exactly (seed ${seed})`, async () => {
    const random = seededRandom(seed);
    const jobId = await deploy({ count: 0, total: 0 }, 8);
    const workers = await Promise.all([0, 1, 2, 3].map((i) => worker(`worker-inc-${i}`, i % 2 === 0 ? replicaA : replicaB)));
    for (const socket of workers) await leaseTask(socket, jobId);
    const amounts = Array.from({ length: 400 }, () => Math.floor(random() * 201) - 100);
    const replies = await Promise.all(amounts.map((by, i) => Promise.all([
      operate(workers[i % workers.length]!, jobId, { kind: 'increment', property: 'count', by: 1 }),
      operate(workers[(i + 1) % workers.length]!, jobId, { kind: 'increment', property: 'total', by }),
    ])));
    expect(replies.flat().every((reply) => reply.ok)).toBe(true);
    const versions = replies.flat().map((reply) => (reply.ok ? reply.version : -1));
    expect(new Set(versions).size).toBe(800); // each increment is its own change
    const snapshot = await request<{ ok: true; version: number; state: string }>(await client(replicaB), 'state:get', readOf(jobId));
    expect(snapshot.version).toBe(800);
    expect(decodeState(snapshot.state)).toEqual({ count: 400, total: amounts.reduce((a, b) => a + b, 0) });
  }, 60_000);

  it(`concurrent set('min') ends at the true minimum, and listening sockets on both replicas hear it (seed ${seed})`, async () => {
    const random = seededRandom(seed + 1);
    const jobId = await deploy({ best: Infinity, note: 'start' }, 8);
    const workers = await Promise.all([0, 1, 2, 3].map((i) => worker(`worker-min-${i}`, i % 2 === 0 ? replicaA : replicaB)));
    for (const socket of workers) await leaseTask(socket, jobId);
    // A listening client on B and a listening worker on A; a client that did not subscribe hears nothing.
    const listener = await client(replicaB);
    const silent = await client(replicaB);
    const heard: StateChangeEvent[] = [];
    const workerHeard: StateChangeEvent[] = [];
    let silentHeard = 0;
    listener.on('state:change', (event) => heard.push(event));
    silent.on('state:change', () => silentHeard++);
    workers[0]!.on('state:change', (event) => workerHeard.push(event));
    expect(await request(listener, 'state:subscribe', readOf(jobId))).toMatchObject({ ok: true, version: 0 });
    expect(await request(workers[0]!, 'state:subscribe', { jobId })).toMatchObject({ ok: true });
    const candidates = Array.from({ length: 300 }, () => Math.floor(random() * 1_000_000) - 500_000);
    const replies = await Promise.all(candidates.map((best, i) =>
      operate(workers[i % workers.length]!, jobId, { kind: 'set', condition: 'min', property: 'best', state: encodeState({ best, note: `from ${i}` }) })));
    expect(replies.every((reply) => reply.ok)).toBe(true);
    const minimum = Math.min(...candidates);
    const snapshot = await request<{ ok: true; version: number; state: string }>(await client(replicaA), 'state:get', readOf(jobId));
    expect((decodeState(snapshot.state) as StateObject).best).toBe(minimum);
    const replaced = replies.filter((reply) => reply.ok && reply.replaced).length;
    expect(snapshot.version).toBe(replaced);
    await waitFor('the listening client heard the last change', async () => heard.some((event) => event.version === snapshot.version), 5000, 20);
    await waitFor('the listening worker heard the last change', async () => workerHeard.some((event) => event.version === snapshot.version), 5000, 20);
    expect(silentHeard).toBe(0);
  }, 60_000);

  it('every change is in Postgres: a state Redis lost comes back from there', async () => {
    const jobId = await deploy({ n: 1 }, 4);
    const socket = await worker('worker-pg-1', replicaB);
    await leaseTask(socket, jobId);
    await operate(socket, jobId, { kind: 'increment', property: 'n', by: 41 });
    const { Redis } = await import('ioredis');
    const connection = new Redis(env.REDIS_URL!);
    try {
      await connection.del(`${env.REDIS_PREFIX}:state:${jobId}`, `${env.REDIS_PREFIX}:state:${jobId}:keys`);
    } finally {
      connection.disconnect();
    }
    const snapshot = await request<{ ok: true; version: number; state: string }>(await client(replicaA), 'state:get', readOf(jobId));
    expect(snapshot).toMatchObject({ ok: true, version: 1, state: '{"n":42}' });
    expect(await operate(socket, jobId, { kind: 'increment', property: 'n', by: 1 })).toMatchObject({ ok: true, version: 2, state: '{"n":43}' });
  }, 30_000);

  it('a worker without a task of the job, or a stranger client, cannot change its state', async () => {
    const jobId = await deploy({ n: 1 }, 4);
    const idle = await worker('worker-idle-1', replicaA);
    expect(await operate(idle, jobId, { kind: 'increment', property: 'n', by: 1 })).toMatchObject({ ok: false, code: 'ENOTLEASED' });
    const stranger = Wallet.createRandom();
    const { SignedKind, signRequest } = await import('@commune/protocol');
    const body = { jobId, operation: StateOperationSchema.parse({ kind: 'increment', property: 'n', by: 1 }), nonce: 'n_stranger_1', expiresAt: Date.now() + 60_000 };
    expect(await request(await client(replicaA), 'state:op', { request: body, signature: await signRequest(stranger, SignedKind.stateOperation, body) })).toMatchObject({ ok: false, code: 'EPERM' });
    const mine = { ...body, nonce: 'n_owner_0001' };
    expect(await request(await client(replicaB), 'state:op', { request: mine, signature: await signRequest(owner, SignedKind.stateOperation, mine) })).toMatchObject({ ok: true, version: 1, state: '{"n":2}' });
  }, 30_000);

  /** The Lua scripts against applyStateOperation: the same table of operations must give the same states. */
  it(`the Redis scripts and applyStateOperation agree on every operator and value kind (seed ${seed})`, async () => {
    const values: unknown[] = [undefined, null, true, false, 0, -0, 1, -1, 2.5, 1e21, 1e-7, NaN, Infinity, -Infinity, '', ' 12 ', '0x10', '1e3', 'abc', 'abd', '\uffff', '\u{1F600}', 'é', '10', '9', 'Infinity'];
    const conditions = ['max', 'min', '<', '>', '<=', '>=', '==', '!='] as const;
    const jobId = await deploy({}, 4);
    const socket = await worker('worker-table-1', replicaA);
    await leaseTask(socket, jobId);
    const withValue = (value: unknown): StateObject => (value === undefined ? { other: 1 } : { v: value, other: 1 });
    let checked = 0;
    for (const stored of values) {
      for (const incoming of values) {
        for (const condition of conditions) {
          await operate(socket, jobId, { kind: 'set', state: encodeState(withValue(stored)) });
          const operation = StateOperationSchema.parse({ kind: 'set', test: true, condition, property: 'v', state: encodeState(withValue(incoming)) });
          const expected = applyStateOperation(decodeState(encodeState(withValue(stored))) as StateObject, operation);
          const reply = await operate(socket, jobId, operation);
          if (!reply.ok) throw new Error(`${String(incoming)} ${condition} ${String(stored)}: ${reply.code} ${reply.message}`);
          expect({ incoming, condition, stored, replaced: reply.replaced }).toEqual({ incoming, condition, stored, replaced: expected.replaced });
          checked++;
        }
      }
      const increment = StateOperationSchema.parse({ kind: 'increment', property: 'v', by: -2.25 });
      await operate(socket, jobId, { kind: 'set', state: encodeState(withValue(stored)) });
      const expected = applyStateOperation(decodeState(encodeState(withValue(stored))) as StateObject, increment);
      const reply = await operate(socket, jobId, increment);
      if (!reply.ok) throw new Error(`increment of ${String(stored)}: ${reply.code}`);
      expect({ stored, after: decodeState(reply.state) }).toEqual({ stored, after: expected.state });
    }
    expect(checked).toBe(values.length * values.length * conditions.length);
    // Numbers print as JS prints them (the limit counts the bytes of that text).
    for (const [start, by, text] of [[0.1, 0.2, '0.30000000000000004'], [1e20, 9e20, '1e+21'], [0, 1e-7, '1e-7'], [123, 0.5, '123.5'], [-5, 5, '0']] as const) {
      await operate(socket, jobId, { kind: 'set', state: encodeState({ x: start }) });
      expect(await operate(socket, jobId, { kind: 'increment', property: 'x', by })).toMatchObject({ ok: true, state: `{"x":${text}}` });
    }
    // Size limit in the script, for growth by increment too.
    await operate(socket, jobId, { kind: 'set', state: encodeState({ s: 'x'.repeat(65_500) }) }); // 65,508 bytes
    const grown: StateOperationReply[] = [];
    for (let i = 0; i < 5; i++) grown.push(await operate(socket, jobId, { kind: 'increment', property: 's', by: 1_000_000 })); // +7 bytes each
    expect(grown.map((reply) => (reply.ok ? 'ok' : reply.code))).toEqual(['ok', 'ok', 'ok', 'ok', 'ESTATETOOBIG']);
    // Objects as compared values: EINVAL, as applyStateOperation.
    await operate(socket, jobId, { kind: 'set', state: encodeState({ v: [1] }) });
    expect(await operate(socket, jobId, { kind: 'set', condition: 'min', property: 'v', state: encodeState({ v: 1 }) })).toMatchObject({ ok: false, code: 'EINVAL' });
  }, 120_000);
});
