import { Redis } from 'ioredis';
import { Wallet } from 'ethers';
import {
  JobEventLimits, JobEventPageSchema, type DeployReply, type JobEventCursor, type JobEventEntry, type JobEventPage, type Task, type TaskGrant,
} from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../scheduler-app.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../../test/support/services.js';
import { signedDeploy } from '../../../../test/support/signing.js';
import { connectClient, connectWorker, request, type TestClientSocket, type TestWorkerSocket } from '../../../../test/support/sockets.js';

const jobEventNames = ['job:accepted', 'job:status', 'job:results', 'job:console', 'job:custom', 'job:slice-error', 'job:end'] as const;

describe('job event logs across two scheduler replicas (real Postgres and Redis)', () => {
  // Status events as often as they come, so that both replicas raise them.
  const env = isolatedEnvironment({ STATUS_EVENT_INTERVAL_MS: '0' });
  let replicaA: SchedulerApp;
  let replicaB: SchedulerApp;
  const owner = Wallet.createRandom();
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];
  let redis: Redis;

  beforeAll(async () => {
    replicaA = await startScheduler(env);
    replicaB = await startScheduler(env);
    redis = new Redis(env.REDIS_URL!);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    redis?.disconnect();
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
  /** Every job event the socket hears, as a replay entry. */
  function record(socket: TestClientSocket): JobEventEntry[] {
    const heard: JobEventEntry[] = [];
    for (const name of jobEventNames) (socket.on as (event: string, listener: (event: never) => void) => void)(name, (event) => heard.push({ name, event } as JobEventEntry));
    return heard;
  }
  async function deploy(socket: TestClientSocket, slices: number): Promise<{ jobId: string; readToken: string }> {
    const reply = await request<DeployReply>(socket, 'deploy', await signedDeploy(owner, { work: '(i) => i', inputSet: { kind: 'range', range: { start: 0, end: slices - 1 } } }));
    if (!reply.ok) throw new Error(`deploy refused: ${reply.code} ${reply.message}`);
    return { jobId: reply.jobId, readToken: reply.readToken };
  }
  async function lease(socket: TestWorkerSocket, jobId: string, maxSlices: number): Promise<Task> {
    return waitFor(`a task of ${jobId}`, async () => (await request<TaskGrant>(socket, 'task:request', { maxSlices })).tasks.find((task) => task.jobId === jobId));
  }
  /** Console and custom events of each slice of the task, then its results (value: 10 x the slice). */
  async function work(socket: TestWorkerSocket, task: Task): Promise<void> {
    const slices = task.slices.map((slice) => slice.sliceIndex);
    const events = await request<{ ok: boolean }>(socket, 'task:events', {
      jobId: task.jobId, taskId: task.taskId,
      console: slices.map((sliceIndex) => ({ sliceIndex, level: 'log', message: `slice ${sliceIndex}` })),
      custom: slices.map((sliceIndex) => ({ sliceIndex, event: 'progress-note', value: { sliceIndex } })),
    });
    expect(events.ok).toBe(true);
    const results = await request<{ ok: boolean }>(socket, 'task:results', {
      taskId: task.taskId, jobId: task.jobId, outcomes: slices.map((sliceIndex) => ({ sliceIndex, status: 'ok', value: sliceIndex * 10, elapsedMs: 1 })),
    });
    expect(results.ok).toBe(true);
  }
  const page = async (socket: TestClientSocket, name: 'subscribe' | 'job:events', payload: Record<string, unknown>): Promise<JobEventPage> => {
    const reply = await request<{ ok: boolean; events?: unknown; code?: string }>(socket, name, payload);
    if (!reply.ok) throw new Error(`${name} refused: ${reply.code}`);
    return JobEventPageSchema.parse(reply.events);
  };
  const cursorOf = (entry: JobEventEntry): JobEventCursor => entry.event.cursor!;

  it('numbers the events of workers on both replicas contiguously; a replay from any replica gives them again, in order, exactly as they went out', async () => {
    const deployer = await client(replicaA);
    const heard = record(deployer);
    const { jobId, readToken } = await deploy(deployer, 12);
    const [onA, onB] = [await worker('worker-events-a', replicaA), await worker('worker-events-b', replicaB)];
    for (let round = 0; round < 3; round++) {
      await work(onA, await lease(onA, jobId, 2));
      await work(onB, await lease(onB, jobId, 2));
    }
    await waitFor('job:end', () => heard.some((entry) => entry.name === 'job:end'), 10_000);
    await new Promise((resolve) => setTimeout(resolve, 100)); // a late status copy, if any, arrives too
    const live = [...heard].sort((a, b) => cursorOf(a).seq - cursorOf(b).seq);
    expect(new Set(live.map((entry) => cursorOf(entry).epoch)).size).toBe(1);
    expect(live.map((entry) => cursorOf(entry).seq)).toEqual(live.map((_, i) => i + 1));
    const epoch = cursorOf(live[0]!).epoch;
    for (const name of ['job:accepted', 'job:console', 'job:custom', 'job:results', 'job:status', 'job:end'] as const) {
      expect(live.some((entry) => entry.name === name)).toBe(true);
    }

    // A client on the other replica, from the start: every event, equal to what went out live.
    const late = await client(replicaB);
    const replay = await page(late, 'subscribe', { jobId, readToken, since: { epoch, seq: 0 } });
    expect(replay).toMatchObject({ gap: false, more: false, cursor: { epoch, seq: live.length } });
    expect(replay.events).toEqual(live);
    // From the middle, with job:events.
    const middle = await page(late, 'job:events', { jobId, readToken, since: { epoch, seq: 10 } });
    expect(middle.events).toEqual(live.slice(10));

    // A socket that did not ask for the results gets their places in the log, not their values.
    const noResults = await client(replicaB);
    const withoutValues = await page(noResults, 'subscribe', { jobId, readToken, results: false, since: { epoch, seq: 0 } });
    expect(withoutValues.events.map((entry) => entry.name)).toEqual(live.map((entry) => entry.name));
    for (const entry of withoutValues.events) if (entry.name === 'job:results') expect(entry.event.results).toEqual([]);
    expect(live.filter((entry) => entry.name === 'job:results').flatMap((entry) => entry.name === 'job:results' ? entry.event.results : []))
      .toHaveLength(12);
  }, 60_000);

  it('a live socket without the results gets each results event as its place in the log only', async () => {
    const deployer = await client(replicaA);
    const { jobId, readToken } = await deploy(deployer, 4);
    const watcher = await client(replicaB);
    const heard = record(watcher);
    const subscribed = await page(watcher, 'subscribe', { jobId, readToken, results: false });
    expect(subscribed.events).toEqual([]);
    const onA = await worker('worker-events-c', replicaA);
    await work(onA, await lease(onA, jobId, 4));
    await waitFor('job:end', () => heard.some((entry) => entry.name === 'job:end'), 10_000);
    const results = heard.filter((entry) => entry.name === 'job:results');
    expect(results.length).toBeGreaterThan(0);
    for (const entry of results) expect(entry.event).toMatchObject({ jobId, results: [] });
    // Its events continue from the cursor the subscribe gave, without a hole.
    const seqs = heard.map((entry) => cursorOf(entry).seq).sort((a, b) => a - b);
    expect(seqs[0]).toBe((subscribed.cursor?.seq ?? 0) + 1);
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
  }, 30_000);

  it('replays only with the read access a subscribe needs', async () => {
    const deployer = await client(replicaA);
    const { jobId } = await deploy(deployer, 2);
    const stranger = await client(replicaB);
    const since = { epoch: 'abcdef0123456789', seq: 0 };
    expect(await request(stranger, 'job:events', { jobId, since })).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await request(stranger, 'job:events', { jobId, since, readToken: 'ab'.repeat(32) })).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await request(stranger, 'subscribe', { jobId, since, readToken: 'ab'.repeat(32) })).toMatchObject({ ok: false, code: 'EPERM' });
    // A cursor outside its bounds is refused before anything is read.
    expect(await request(stranger, 'job:events', { jobId, since: { epoch: 'x'.repeat(100), seq: -1 } })).toMatchObject({ ok: false, code: 'EINVAL' });
  }, 30_000);

  it(`pages a long log (${JobEventLimits.maxEventsPerPage} events a page) and says when more follow`, async () => {
    const deployer = await client(replicaA);
    const heard = record(deployer);
    const { jobId, readToken } = await deploy(deployer, 2);
    const onB = await worker('worker-events-d', replicaB);
    const task = await lease(onB, jobId, 1);
    const messages = JobEventLimits.maxEventsPerPage + 50;
    for (let i = 0; i < messages; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) => request(onB, 'task:events', {
        jobId, taskId: task.taskId, console: [{ sliceIndex: task.slices[0]!.sliceIndex, level: 'info', message: `line ${i + k}` }],
      })));
    }
    await waitFor('every console event', () => heard.filter((entry) => entry.name === 'job:console').length >= messages, 10_000);
    const epoch = cursorOf(heard[0]!).epoch;
    const first = await page(deployer, 'job:events', { jobId, readToken, since: { epoch, seq: 0 } });
    expect(first.events).toHaveLength(JobEventLimits.maxEventsPerPage);
    expect(first.more).toBe(true);
    const second = await page(deployer, 'job:events', { jobId, readToken, since: cursorOf(first.events.at(-1)!) });
    expect(second.more).toBe(false);
    const replayed = [...first.events, ...second.events];
    expect(replayed.map((entry) => cursorOf(entry).seq)).toEqual(replayed.map((_, i) => i + 1));
    expect(replayed.length).toBe(second.cursor!.seq);
  }, 60_000);

  it('after Redis lost the log (and its generation), a cursor of the old log reads as a gap and the new events follow', async () => {
    const deployer = await client(replicaA);
    const heard = record(deployer);
    const { jobId, readToken } = await deploy(deployer, 4);
    const onA = await worker('worker-events-e', replicaA);
    const task = await lease(onA, jobId, 1);
    const note = (message: string) => request(onA, 'task:events', { jobId, taskId: task.taskId, console: [{ sliceIndex: task.slices[0]!.sliceIndex, level: 'log', message }] });
    await note('before');
    await waitFor('the first console event', () => heard.some((entry) => entry.name === 'job:console'), 5000);
    const before = cursorOf(heard.at(-1)!);
    await redis.del(`${env.REDIS_PREFIX}:generation`, `${env.REDIS_PREFIX}:job-events:${jobId}`, `${env.REDIS_PREFIX}:job-events:${jobId}:meta`);
    await note('after');
    await waitFor('the console event after the loss', () => heard.some((entry) => entry.name === 'job:console' && entry.event.entries[0]?.message === 'after'), 5000);
    const after = cursorOf(heard.at(-1)!);
    expect(after.epoch).not.toBe(before.epoch);
    expect(after.seq).toBe(1);
    const resumed = await page(await client(replicaB), 'subscribe', { jobId, readToken, since: before });
    expect(resumed).toMatchObject({ gap: true, cursor: after, more: false });
    expect(resumed.events.map((entry) => entry.name === 'job:console' && entry.event.entries[0]?.message)).toEqual(['after']);
  }, 30_000);
});
