import { Wallet } from 'ethers';
import {
  recoverRequestSigner, SignedKind, signRequest, type DeployReply, type JobResultsEvent, type JobSliceErrorEvent, type JobStatus, type Task, type TaskGrant, type TaskResultsAck,
} from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../test/support/services.js';
import { signedDeploy, signedFetch } from '../../../test/support/signing.js';
import { connectClient, connectWorker, request, type TestClientSocket, type TestWorkerSocket } from '../../../test/support/sockets.js';

type Ack = ({ ok: true } & TaskResultsAck) | { ok: false; code: string; message: string };
type ActionReply = { ok: true; status: JobStatus } | { ok: false; code: string; message: string };

/**
 * The Compute API's job/result/static part on the scheduler: owner-signed REST (results list,
 * fetch, stat, delete; job info, slice info, the owner's job list), pause/resume, market quotes,
 * result delivery for non-collating jobs and ENOPROGRESS progress reports.
 */
describe('scheduler Compute API (real Postgres and Redis)', () => {
  const quoteKey = new Wallet('0x' + '42'.repeat(32));
  const env = isolatedEnvironment({
    LEASE_TIMEOUT_MS: '5000',
    LEASE_SWEEP_INTERVAL_MS: '100',
    MAX_ATTEMPTS_PER_SLICE: '3',
    SCHEDULER_QUOTE_KEY: quoteKey.privateKey,
    QUOTE_LIFETIME_MS: '60000',
  });
  let scheduler: SchedulerApp;
  const owner = Wallet.createRandom();
  const stranger = Wallet.createRandom();
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];
  let workerCount = 0;

  beforeAll(async () => {
    scheduler = await startScheduler(env);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await scheduler?.close();
    await dropIsolated(env);
  });

  async function client() {
    const socket = await connectClient(scheduler.url);
    sockets.push(socket);
    return socket;
  }
  async function worker() {
    const socket = await connectWorker(scheduler.url, `w_compute_api_${++workerCount}`);
    sockets.push(socket);
    return socket;
  }
  async function deploy(socket: TestClientSocket, spec: Parameters<typeof signedDeploy>[1], wallet = owner, extra: Record<string, unknown> = {}) {
    const reply = await request<DeployReply>(socket, 'deploy', { ...(await signedDeploy(wallet, spec)), ...extra });
    if (!reply.ok) throw new Error(`deploy refused: ${reply.code} ${reply.message}`);
    return reply;
  }
  async function leaseTask(socket: TestWorkerSocket, jobId: string, maxSlices = 100): Promise<Task> {
    return waitFor(`a task of ${jobId}`, async () => {
      const grant = await request<TaskGrant>(socket, 'task:request', { maxSlices });
      return grant.tasks.find((task) => task.jobId === jobId);
    });
  }
  async function submit(socket: TestWorkerSocket, task: Task, slices: number[], value: (i: number) => unknown = (i) => i * 2, elapsedMs = 5) {
    return request<Ack>(socket, 'task:results', {
      taskId: task.taskId,
      jobId: task.jobId,
      outcomes: slices.map((sliceIndex) => ({ sliceIndex, status: 'ok', value: value(sliceIndex), elapsedMs })),
    });
  }
  async function act(socket: TestClientSocket, action: 'cancel' | 'pause' | 'resume', jobId: string, wallet = owner) {
    const body = { action, jobId, nonce: `n_${Math.random().toString(36).slice(2, 14)}`, expiresAt: Date.now() + 60_000 };
    return request<ActionReply>(socket, 'job:action', { request: body, signature: await signRequest(wallet, SignedKind.jobAction, body) });
  }
  const slicesQuery = (set: unknown) => `slices=${encodeURIComponent(JSON.stringify(set))}`;

  it('refuses owner requests that are unsigned, by a stranger, replayed, expired or signed for another path', async () => {
    const c = await client();
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: [1] } });
    const path = `/jobs/${jobId}/results/list`;
    const unsigned = await fetch(scheduler.url + path);
    expect(unsigned.status).toBe(403);
    expect(await unsigned.json()).toMatchObject({ code: 'EPERM' });
    expect(await signedFetch(stranger, scheduler.url, 'GET', path)).toMatchObject({ status: 403, body: { code: 'EPERM' } });
    expect(await signedFetch(owner, scheduler.url, 'GET', path, { nonce: 'n_once_only_1' })).toMatchObject({ status: 200 });
    expect(await signedFetch(owner, scheduler.url, 'GET', path, { nonce: 'n_once_only_1' })).toMatchObject({ status: 409, body: { code: 'EREPLAY' } });
    expect(await signedFetch(owner, scheduler.url, 'GET', path, { expiresAt: Date.now() - 1 })).toMatchObject({ status: 401, body: { code: 'EEXPIRED' } });
    const tampered = await signedFetch(owner, scheduler.url, 'DELETE', `/jobs/${jobId}/results`, { signedPath: path });
    expect(tampered).toMatchObject({ status: 401, body: { code: 'EBADSIGNATURE' } });
    await act(c, 'cancel', jobId);
  });

  it('lists, fetches, describes and deletes results by slice set, and measures meanSliceProfile', async () => {
    const c = await client();
    const w = await worker();
    const { jobId } = await deploy(c, { work: '(i) => i * 2', inputSet: { kind: 'range', range: { start: 0, end: 9 } } });
    const task = await leaseTask(w, jobId, 10);
    expect(task.slices).toHaveLength(10);
    const computed = [0, 1, 2, 5, 6, 8];
    expect(await submit(w, task, computed)).toMatchObject({ ok: true, accepted: computed });

    const list = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/results/list`);
    expect(list.body).toEqual({ jobId, slices: { sparse: [{ start: 0, end: 2 }, { start: 5, end: 6 }, { start: 8, end: 8 }] }, count: 6, nextAfter: null });
    const evens = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/results/list?${slicesQuery({ sparse: [{ start: 0, end: 9, step: 2 }] })}`);
    expect(evens.body.slices).toEqual({ sparse: [{ start: 0, end: 2, step: 2 }, { start: 6, end: 8, step: 2 }] });

    const values = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/results/values?${slicesQuery({ sparse: [{ start: 1, end: 6 }] })}`);
    expect(values.body).toEqual({ jobId, results: [1, 2, 5, 6].map((i) => ({ sliceIndex: i, value: i * 2 })), nextAfter: null });

    const stat = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/results/stat`);
    expect(stat.body.stats.map((s: { sliceIndex: number }) => s.sliceIndex)).toEqual(computed);
    for (const entry of stat.body.stats as Array<{ distributedTime: string; computedTime: string; payment: string }>) {
      expect(entry.payment).toBe('0');
      expect(Date.parse(entry.distributedTime)).toBeLessThanOrEqual(Date.parse(entry.computedTime));
    }

    const deleted = await signedFetch(owner, scheduler.url, 'DELETE', `/jobs/${jobId}/results?${slicesQuery({ sparse: [{ start: 0, end: 1 }] })}`);
    expect(deleted.body).toEqual({ jobId, deleted: 2 });
    expect((await signedFetch(owner, scheduler.url, 'DELETE', `/jobs/${jobId}/results?${slicesQuery({ sparse: [{ start: 0, end: 1 }] })}`)).body.deleted).toBe(0);
    const after = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/results/list`);
    expect(after.body.slices.sparse).toEqual([{ start: 2, end: 2 }, { start: 5, end: 6 }, { start: 8, end: 8 }]);
    const page = (await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/results`)).body as { results: Array<{ sliceIndex: number }> };
    expect(page.results.map((r) => r.sliceIndex)).toEqual([2, 5, 6, 8]);

    const status = (await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}`)).body as JobStatus;
    expect(status.computed).toBe(6); // deleting results does not un-compute slices
    // Results 0, 2, 4, 10, 12, 16 are (1+1+1+2+2+2)/6 bytes of JSON on average; 5 ms each; inputs 0..9 one byte.
    expect(status.meanSliceProfile).toEqual({ cpuHours: 5 / 3_600_000, gpuHours: 0, inputMBytes: expect.any(Number), outputMBytes: 9 / 6 / 1e6 });
    expect(status.meanSliceProfile!.inputMBytes).toBeCloseTo(1 / 1e6, 12);
    await act(c, 'cancel', jobId);
  });

  it('answers getJobInfo with what was deployed, its receipt and status, to its owner only', async () => {
    const c = await client();
    const deployed = await deploy(c, { work: '(x, y) => x + y', arguments: [5], inputSet: { kind: 'array', values: [1, 2] }, public: { name: 'info' }, collateResults: false });
    const info = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${deployed.jobId}/info`);
    expect(info.body).toMatchObject({
      jobId: deployed.jobId,
      work: '(x, y) => x + y',
      arguments: [5],
      inputSet: { kind: 'array', values: [1, 2] },
      public: { name: 'info' },
      collateResults: false,
      slicePaymentOffer: '0',
      receipt: deployed.receipt,
      status: { runStatus: 'running', total: 2, owner: owner.address },
    });
    expect(await signedFetch(stranger, scheduler.url, 'GET', `/jobs/${deployed.jobId}/info`)).toMatchObject({ status: 403, body: { code: 'EPERM' } });
    await act(c, 'cancel', deployed.jobId);
  });

  it('answers getSliceInfo with the attempts, failures and times of slices with a history', async () => {
    const c = await client();
    const w = await worker();
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: ['a', 'b', 'c'] } });
    const first = await leaseTask(w, jobId, 3);
    await submit(w, first, [0], () => 'A');
    await request<Ack>(w, 'task:results', {
      taskId: first.taskId, jobId, outcomes: [{ sliceIndex: 1, status: 'error', error: { code: 'EWORKFUNCTION', name: 'Error', message: 'boom' }, elapsedMs: 1 }],
    });
    const retry = await leaseTask(w, jobId, 3);
    expect(retry.slices.map((s) => s.sliceIndex)).toEqual([1]);
    await submit(w, retry, [1], () => 'B', 7);
    const info = await signedFetch(owner, scheduler.url, 'GET', `/jobs/${jobId}/slices`);
    expect(info.status).toBe(200);
    expect(info.body.status).toMatchObject({ jobId, computed: 2, errors: 1 });
    expect(info.body.nextAfter).toBeNull();
    const [zero, one] = info.body.slices as Array<Record<string, unknown>>;
    expect(info.body.slices).toHaveLength(2); // slice 2 was leased but has no history yet
    expect(zero).toMatchObject({ sliceIndex: 0, status: 'computed', attempts: 1, elapsedMs: 5, failures: [] });
    expect(one).toMatchObject({ sliceIndex: 1, status: 'computed', attempts: 2, elapsedMs: 7, failures: [{ code: 'EWORKFUNCTION', message: 'boom' }] });
    expect(Date.parse(one!.distributedTime as string)).toBeLessThanOrEqual(Date.parse(one!.computedTime as string));
    await act(c, 'cancel', jobId);
  });

  it("lists an owner's jobs within a time window, newest first, to that owner only", async () => {
    const c = await client();
    const account = Wallet.createRandom();
    const before = Date.now() - 1;
    const older = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: [1] } }, account);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const middle = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 30));
    const newer = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: [1, 2] } }, account);
    const list = async (query: string, wallet = account) => signedFetch(wallet, scheduler.url, 'GET', `/jobs?owner=${account.address}${query}`);
    expect((await list('')).body.jobs.map((job: JobStatus) => job.jobId)).toEqual([newer.jobId, older.jobId]);
    expect((await list(`&from=${middle}`)).body.jobs.map((job: JobStatus) => job.jobId)).toEqual([newer.jobId]);
    expect((await list(`&from=${before}&to=${middle}`)).body.jobs.map((job: JobStatus) => job.jobId)).toEqual([older.jobId]);
    expect(await list('', stranger)).toMatchObject({ status: 403, body: { code: 'EPERM' } });
    await act(c, 'cancel', older.jobId, account);
    await act(c, 'cancel', newer.jobId, account);
  });

  it('pauses dispatch (keeping put-back slices) and resumes it, for the owner only', async () => {
    const c = await client();
    const w = await worker();
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 4 } } });
    const runStatuses: string[] = [];
    c.on('job:status', (status) => {
      if (status.jobId === jobId) runStatuses.push(status.runStatus);
    });
    const first = await leaseTask(w, jobId, 2);
    expect(await act(c, 'pause', jobId, stranger)).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await act(c, 'pause', jobId)).toMatchObject({ ok: true, status: { runStatus: 'paused' } });
    expect(await act(c, 'pause', jobId)).toMatchObject({ ok: true, status: { runStatus: 'paused' } });
    // A result of a slice handed out before the pause still counts; a returned slice waits.
    expect(await submit(w, first, [first.slices[0]!.sliceIndex])).toMatchObject({ ok: true, accepted: [first.slices[0]!.sliceIndex] });
    await request(w, 'task:return', { taskId: first.taskId, jobId, sliceIndexes: [first.slices[1]!.sliceIndex] });
    const grant = await request<TaskGrant>(w, 'task:request', { maxSlices: 10 });
    expect(grant.tasks.filter((task) => task.jobId === jobId)).toEqual([]);
    expect(await act(c, 'resume', jobId)).toMatchObject({ ok: true, status: { runStatus: 'running' } });
    const again = await leaseTask(w, jobId, 10);
    expect(again.slices.map((s) => s.sliceIndex).sort()).toEqual([1, 2, 3, 4]);
    await waitFor('status events for pause and resume', () => runStatuses.includes('paused') && runStatuses.at(-1) === 'running');
    expect(await act(c, 'pause', jobId)).toMatchObject({ ok: true, status: { runStatus: 'paused' } });
    expect(await act(c, 'cancel', jobId)).toMatchObject({ ok: true, status: { runStatus: 'cancelled' } });
    expect(await act(c, 'resume', jobId)).toMatchObject({ ok: false, code: 'EJOBSTATE' });
  });

  it('signs market value quotes with the scheduler key, at the market rate, with an expiry', async () => {
    const quote = (await (await fetch(`${scheduler.url}/market/value`)).json()) as Record<string, unknown> & { signature: string };
    const { signature, ...signed } = quote;
    expect(signed).toMatchObject({ CPUHour: '0.52753536', GPUHour: '0.52753536', InputMByte: '0.0001465376', OutputMByte: '0.0001465376', currency: 'DCC', signer: quoteKey.address });
    expect((signed.quoteExpiry as number) - (signed.issuedAt as number)).toBe(60_000);
    expect(recoverRequestSigner(SignedKind.marketQuote, signed, signature)).toBe(quoteKey.address);
    expect(recoverRequestSigner(SignedKind.marketQuote, { ...signed, CPUHour: '0.1' }, signature)).not.toBe(quoteKey.address);
  });

  it('pushes the results of a non-collating job only to sockets that ask for them', async () => {
    const deployer = await client();
    const listener = await client();
    const watcher = await client();
    const w = await worker();
    const { jobId, readToken } = await deploy(deployer, { work: '(x) => x', collateResults: false, inputSet: { kind: 'array', values: [1, 2] } });
    const heard = new Map<TestClientSocket, number>();
    for (const socket of [deployer, listener, watcher]) {
      socket.on('job:results', (event: JobResultsEvent) => {
        if (event.jobId === jobId) heard.set(socket, (heard.get(socket) ?? 0) + event.results.length);
      });
    }
    expect(await request(listener, 'subscribe', { jobId, readToken })).toMatchObject({ ok: true });
    expect(await request(watcher, 'subscribe', { jobId, results: false, readToken })).toMatchObject({ ok: true });
    const ended = new Promise<void>((resolve) => watcher.on('job:end', (event) => event.jobId === jobId && resolve()));
    const task = await leaseTask(w, jobId, 2);
    await submit(w, task, [0, 1]);
    await ended;
    await waitFor('results at the listener', () => heard.get(listener) === 2);
    // They hear each results event only as its place in the job's event order (a cursor, no results).
    expect(heard.get(deployer) ?? 0).toBe(0);
    expect(heard.get(watcher) ?? 0).toBe(0);

    const { jobId: withListeners } = await deploy(deployer, { work: '(x) => x', collateResults: false, inputSet: { kind: 'array', values: [1] } }, owner, { resultEvents: true });
    const pushed = new Promise<void>((resolve) => deployer.on('job:results', (event) => event.jobId === withListeners && event.results.length > 0 && resolve()));
    await submit(w, await leaseTask(w, withListeners, 1), [0]);
    await pushed;
  });

  it('forwards an ENOPROGRESS slice failure with the progress reports the sandbox saw', async () => {
    const c = await client();
    const w = await worker();
    const { jobId } = await deploy(c, { work: '(x) => x', inputSet: { kind: 'array', values: [1] } });
    const errors: JobSliceErrorEvent[] = [];
    c.on('job:slice-error', (event) => errors.push(event));
    const task = await leaseTask(w, jobId, 1);
    const progress = {
      elapsedMs: 1600,
      last: { timestamp: 120, progress: null, value: null, throttledReports: 3 },
      lastUpdate: { timestamp: 20, progress: 0.25, value: '25%', throttledReports: 0 },
    };
    await request<Ack>(w, 'task:results', {
      taskId: task.taskId, jobId, outcomes: [{ sliceIndex: 0, status: 'error', error: { code: 'ENOPROGRESS', name: 'Error', message: 'no progress', progress }, elapsedMs: 1600 }],
    });
    await waitFor('the slice error', () => errors.length === 1);
    expect(errors[0]).toMatchObject({ jobId, sliceIndex: 0, error: { code: 'ENOPROGRESS', progress } });
    await act(c, 'cancel', jobId);
  });
});
