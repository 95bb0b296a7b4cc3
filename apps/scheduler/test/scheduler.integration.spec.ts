import { Wallet } from 'ethers';
import { newId, type DeployReply, type JobEndEvent, type JobResultsEvent, type Task, type TaskGrant, type TaskResultsAck } from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { JobsRepository } from '../src/jobs/jobs.repository.js';
import { LeaseRepository } from '../src/dispatch/lease.repository.js';
import { MaintenanceConsumer } from '../src/dispatch/maintenance.consumer.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../test/support/services.js';
import { signedDeploy, signedFetch } from '../../../test/support/signing.js';
import { connectClient, connectWorker, request, type TestClientSocket, type TestWorkerSocket } from '../../../test/support/sockets.js';

type Ack = ({ ok: true } & TaskResultsAck) | { ok: false; code: string; message: string };

describe('scheduler (real Postgres and Redis)', () => {
  const env = isolatedEnvironment({ LEASE_TIMEOUT_MS: '400', LEASE_SWEEP_INTERVAL_MS: '100', MAX_WORK_BYTES: '20000', MAX_ATTEMPTS_PER_SLICE: '2' });
  let replicaA: SchedulerApp;
  let replicaB: SchedulerApp;
  const owner = Wallet.createRandom();
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];

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

  async function client(replica = replicaA) {
    const socket = await connectClient(replica.url);
    sockets.push(socket);
    return socket;
  }
  async function worker(id: string, replica = replicaA) {
    const socket = await connectWorker(replica.url, id);
    sockets.push(socket);
    return socket;
  }
  async function deploy(socket: TestClientSocket, spec: Parameters<typeof signedDeploy>[1]) {
    const reply = await request<DeployReply>(socket, 'deploy', await signedDeploy(owner, spec));
    if (!reply.ok) throw new Error(`deploy refused: ${reply.code} ${reply.message}`);
    return reply;
  }
  /** Leases until a task of `jobId` arrives (other suites' jobs are not in this isolated deployment). */
  async function leaseTask(socket: TestWorkerSocket, jobId: string, maxSlices = 100): Promise<Task> {
    return waitFor(`a task of ${jobId}`, async () => {
      const grant = await request<TaskGrant>(socket, 'task:request', { maxSlices });
      return grant.tasks.find((task) => task.jobId === jobId);
    });
  }
  /** Ends a job the test leaves unfinished, so the next test's leases see only its own job. */
  async function cancel(socket: TestClientSocket, jobId: string) {
    const { SignedKind, signRequest } = await import('@commune/protocol');
    const action = { action: 'cancel' as const, jobId, nonce: `n_${jobId}`, expiresAt: Date.now() + 60_000 };
    await request(socket, 'job:action', { request: action, signature: await signRequest(owner, SignedKind.jobAction, action) });
  }
  function collect(socket: TestClientSocket, jobId: string) {
    const results = new Map<number, unknown>();
    let end: JobEndEvent | null = null;
    socket.on('job:results', (event: JobResultsEvent) => {
      if (event.jobId === jobId) for (const r of event.results) results.set(r.sliceIndex, r.value);
    });
    socket.on('job:end', (event: JobEndEvent) => {
      if (event.jobId === jobId) end = event;
    });
    return { results, end: () => end as JobEndEvent | null };
  }

  it('runs a range job: lazy slices, results stored once, events to the owner, REST pages', async () => {
    const c = await client();
    const w = await worker('w_integration_1');
    const { jobId, total } = await deploy(c, { work: '(i) => i * 2', inputSet: { kind: 'range', range: { start: 10, end: 13, step: 2 } } });
    expect(total).toBe(2);
    const seen = collect(c, jobId);
    const task = await leaseTask(w, jobId);
    expect(task.work).toBe('(i) => i * 2');
    expect(task.slices).toEqual([{ sliceIndex: 0, datum: 10 }, { sliceIndex: 1, datum: 12 }]);
    const ack = await request<Ack>(w, 'task:results', {
      taskId: task.taskId, jobId, outcomes: task.slices.map((s) => ({ sliceIndex: s.sliceIndex, status: 'ok', value: (s.datum as number) * 2, elapsedMs: 1 })),
    });
    expect(ack).toEqual({ ok: true, accepted: [0, 1], refused: [] });
    await waitFor('job:end', () => seen.end());
    expect(seen.end()!.status.runStatus).toBe('finished');
    expect([...seen.results.entries()].sort()).toEqual([[0, 20], [1, 24]]);
    const page = (await signedFetch(owner, replicaA.url, 'GET', `/jobs/${jobId}/results?limit=1`)).body;
    expect(page).toEqual({ jobId, results: [{ sliceIndex: 0, value: 20 }], nextAfter: 0 });
    const rest = (await signedFetch(owner, replicaA.url, 'GET', `/jobs/${jobId}/results?after=0`)).body as { results: unknown[] };
    expect(rest.results).toEqual([{ sliceIndex: 1, value: 24 }]);
    const status = (await signedFetch(owner, replicaA.url, 'GET', `/jobs/${jobId}`)).body;
    expect(status).toMatchObject({ jobId, runStatus: 'finished', total: 2, computed: 2, distributed: 2 });
  });

  it('refuses a duplicate result and results for slices not leased to the worker', async () => {
    const c = await client();
    const w1 = await worker('w_integration_2');
    const w2 = await worker('w_integration_3');
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: ['a', 'b', 'c'] } });
    const task = await leaseTask(w1, jobId, 2);
    const first = task.slices[0]!.sliceIndex;
    const stolen = await request<Ack>(w2, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: first, status: 'ok', value: 'x', elapsedMs: 1 }] });
    expect(stolen).toEqual({ ok: true, accepted: [], refused: [{ sliceIndex: first, code: 'ENOTLEASED' }] });
    const good = await request<Ack>(w1, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: first, status: 'ok', value: 'a', elapsedMs: 1 }] });
    expect(good).toEqual({ ok: true, accepted: [first], refused: [] });
    const again = await request<Ack>(w1, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: first, status: 'ok', value: 'a', elapsedMs: 1 }] });
    expect(again).toEqual({ ok: true, accepted: [], refused: [{ sliceIndex: first, code: 'ENOTLEASED' }] });
    const unleased = await request<Ack>(w1, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: 2, status: 'ok', value: 'c', elapsedMs: 1 }] });
    expect(unleased.ok && unleased.refused).toEqual([{ sliceIndex: 2, code: 'ENOTLEASED' }]);
    await cancel(c, jobId);
  });

  it('puts back the slices of a worker that disconnects', async () => {
    const c = await client();
    const w1 = await worker('w_integration_4');
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 4 } } });
    const task = await leaseTask(w1, jobId, 5);
    expect(task.slices).toHaveLength(5);
    w1.disconnect();
    const w2 = await worker('w_integration_5', replicaB);
    const again = await leaseTask(w2, jobId, 5);
    expect(again.slices.map((s) => s.sliceIndex).sort()).toEqual([0, 1, 2, 3, 4]);
    expect(again.work).toBe('(x) => x');
    await cancel(c, jobId);
  });

  it('puts back the slices of an expired lease', async () => {
    const c = await client();
    const w1 = await worker('w_integration_6');
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 2 } } });
    const task = await leaseTask(w1, jobId, 3);
    const again = await leaseTask(w1, jobId, 3);
    expect(again.taskId).not.toBe(task.taskId);
    expect(again.slices.map((s) => s.sliceIndex).sort()).toEqual([0, 1, 2]);
    const late = await request<Ack>(w1, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: 0, status: 'ok', value: 0, elapsedMs: 1 }] });
    expect(late.ok && late.refused).toEqual([{ sliceIndex: 0, code: 'ENOTLEASED' }]);
    await cancel(c, jobId);
  });

  it('sends events of workers on one replica to a client on the other', async () => {
    const c = await client(replicaA);
    const w = await worker('w_integration_7', replicaB);
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: [1] } });
    const seen = collect(c, jobId);
    const consoleLines: string[] = [];
    c.on('job:console', (event) => consoleLines.push(...event.entries.map((e) => e.message)));
    const task = await leaseTask(w, jobId);
    w.emit('task:events', { jobId, console: [{ sliceIndex: 0, level: 'log', message: 'hello from B' }], custom: [] });
    await request<Ack>(w, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: 0, status: 'ok', value: 7, elapsedMs: 1 }] });
    await waitFor('job:end on replica A', () => seen.end());
    expect(seen.results.get(0)).toBe(7);
    expect(consoleLines).toEqual(['hello from B']);
  });

  it('fails a job whose slice keeps failing, with the slice error code', async () => {
    const c = await client();
    const w = await worker('w_integration_8');
    const { jobId } = await deploy(c, { work: '(x) => { throw new Error("no") }', inputSet: { kind: 'array', values: [1] } });
    const seen = collect(c, jobId);
    const sliceErrors: string[] = [];
    c.on('job:slice-error', (event) => sliceErrors.push(event.error.code));
    for (let attempt = 0; attempt < 2; attempt++) {
      const task = await leaseTask(w, jobId);
      await request<Ack>(w, 'task:results', { taskId: task.taskId, jobId, outcomes: [{ sliceIndex: 0, status: 'error', error: { code: 'EWORKFUNCTION', name: 'Error', message: 'no' }, elapsedMs: 1 }] });
    }
    await waitFor('job:end', () => seen.end());
    expect(seen.end()!.status).toMatchObject({ runStatus: 'failed', failure: { code: 'EWORKFUNCTION' } });
    expect(sliceErrors).toEqual(['EWORKFUNCTION', 'EWORKFUNCTION']);
  });

  it('refuses bad deploys with named codes', async () => {
    const c = await client();
    const bad = async (request_: unknown) => request<DeployReply>(c, 'deploy', request_);
    const good = await signedDeploy(owner, { work: '(x) => x', inputSet: { kind: 'array', values: [1] } });
    expect(await bad({ job: { ...good.job }, signature: (await signedDeploy(Wallet.createRandom(), { work: '(x) => x', inputSet: { kind: 'array', values: [1] } })).signature }))
      .toMatchObject({ ok: false, code: 'EBADSIGNATURE' });
    expect(await bad({ nonsense: true })).toMatchObject({ ok: false, code: 'EINVAL' });
    expect(await bad(await signedDeploy(owner, { work: '(x) => x' + ' '.repeat(30_000), inputSet: { kind: 'array', values: [1] } }))).toMatchObject({ ok: false, code: 'EWORKTOOBIG' });
    expect(await bad(await signedDeploy(owner, { work: '(x) => x', slicePaymentOffer: '1', inputSet: { kind: 'array', values: [1] } }))).toMatchObject({ ok: false, code: 'ENOBANK' });
    expect(await bad(await signedDeploy(owner, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 10, step: 0 } } }))).toMatchObject({ ok: false, code: 'EINVAL' });
    const first = await bad(good);
    expect(first).toMatchObject({ ok: true });
    // A resent deploy gets the first answer (the client may have lost the ack), with a new read
    // token (the scheduler kept only the first one's hash) ...
    const resent = await bad(good);
    const { readToken: firstToken, ...firstAnswer } = first as Extract<DeployReply, { ok: true }>;
    expect(resent).toMatchObject({ ...firstAnswer, readToken: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect((resent as { readToken: string }).readToken).not.toBe(firstToken);
    // ... while another job reusing the nonce is a replay.
    const other = await signedDeploy(owner, { work: '(x) => x + 1', nonce: good.job.nonce, inputSet: { kind: 'array', values: [1] } });
    expect(await bad(other)).toMatchObject({ ok: false, code: 'EREPLAY' });
  });

  it('cancels a job for its owner only', async () => {
    const c = await client();
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 1e9 } } });
    const { SignedKind, signRequest } = await import('@commune/protocol');
    const action = (nonce: string) => ({ action: 'cancel' as const, jobId, nonce, expiresAt: Date.now() + 60_000 });
    const stranger = Wallet.createRandom();
    const refused = await request<{ ok: boolean; code?: string }>(c, 'job:action', { request: action('n_stranger1'), signature: await signRequest(stranger, SignedKind.jobAction, action('n_stranger1')) });
    expect(refused).toMatchObject({ ok: false, code: 'EPERM' });
    const cancel = action('n_owner0001');
    const done = await request<{ ok: boolean; status?: { runStatus: string } }>(c, 'job:action', { request: cancel, signature: await signRequest(owner, SignedKind.jobAction, cancel) });
    expect(done).toMatchObject({ ok: true, status: { runStatus: 'cancelled', total: 1e9 + 1 } });
  });

  it('leaves a job stored but not yet opened by its deploy to that deploy: reconcile does not open it exhausted', async () => {
    const repository = replicaA.app.get(JobsRepository);
    const leases = replicaA.app.get(LeaseRepository);
    const { job } = await signedDeploy(Wallet.createRandom(), { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 2 } } });
    const jobId = newId('j');
    expect(await repository.create(jobId, job, '0x' + '0'.repeat(64), 3, '0x00')).toBe(true); // stored; openJob not called yet
    await replicaA.app.get(MaintenanceConsumer).reconcile();
    expect(await leases.jobState(jobId)).toBeNull();
    await leases.openJob(jobId, 3); // what the deploy does next
    expect(await leases.jobState(jobId)).toMatchObject({ total: 3, cursor: 0, queued: 0 });
  });
});
