import { Redis } from 'ioredis';
import { loadSchedulerEnv, type SchedulerEnv } from '../config/env.js';
import { RedisConnections } from '../redis/redis.module.js';
import { JobEventLog } from './job-event-log.js';
import { dropIsolated, isolatedEnvironment } from '../../../../test/support/services.js';

describe(`${JobEventLog.name} (real Redis)`, () => {
  const raw = isolatedEnvironment({ JOB_EVENT_LOG_LENGTH: '10', JOB_EVENT_LOG_BYTES: '1000', JOB_EVENT_LOG_GRACE_SECONDS: '120' });
  const env: SchedulerEnv = loadSchedulerEnv(raw);
  const connections: RedisConnections[] = [];
  let redis: Redis;
  const logOn = () => {
    const connection = new RedisConnections(env);
    connections.push(connection);
    return new JobEventLog(connection, env);
  };
  const key = (...parts: string[]) => [env.REDIS_PREFIX, ...parts].join(':');
  let jobNumber = 0;
  const newJob = () => `j_eventlog${String(++jobNumber).padStart(6, '0')}`;

  beforeAll(() => {
    redis = new Redis(env.REDIS_URL);
  });
  afterAll(async () => {
    for (const connection of connections) await connection.onApplicationShutdown();
    redis.disconnect();
    await dropIsolated(raw);
  });

  it('numbers events contiguously across two connections (two replicas) appending at once', async () => {
    const [a, b] = [logOn(), logOn()];
    const jobId = newJob();
    const appends = await Promise.all(Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).append(jobId, [`{"n":"job:console","i":${i}}`, `{"n":"job:custom","i":${i}}`], false)));
    const firsts = appends.map((cursor) => cursor.seq).sort((x, y) => x - y);
    expect(firsts).toEqual(Array.from({ length: 40 }, (_, i) => 1 + 2 * i)); // each batch of two got two numbers in a row
    expect(new Set(appends.map((cursor) => cursor.epoch)).size).toBe(1);
    const page = await a.read(jobId, { epoch: appends[0]!.epoch, seq: 70 });
    expect(page).toMatchObject({ cursor: { epoch: appends[0]!.epoch, seq: 80 }, gap: false });
    expect(page.entries.map((entry) => entry.seq)).toEqual([71, 72, 73, 74, 75, 76, 77, 78, 79, 80]);
  });

  it('keeps at most JOB_EVENT_LOG_LENGTH entries, oldest dropped first; a read from before them says gap', async () => {
    const log = logOn();
    const jobId = newJob();
    let epoch = '';
    for (let i = 1; i <= 25; i++) epoch = (await log.append(jobId, [`{"i":${i}}`], false)).epoch;
    expect(await redis.xlen(key('job-events', jobId))).toBe(10);
    const trimmed = await log.read(jobId, { epoch, seq: 3 });
    expect(trimmed.gap).toBe(true);
    expect(trimmed.entries.map((entry) => entry.seq)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    const continuous = await log.read(jobId, { epoch, seq: 15 });
    expect(continuous.gap).toBe(false);
    expect(continuous.entries[0]!.seq).toBe(16);
    // A cursor past the log's end (not one it gave out) cannot continue from it.
    expect((await log.read(jobId, { epoch, seq: 99 })).gap).toBe(true);
  });

  it('keeps at most JOB_EVENT_LOG_BYTES of entries; one larger than that is not kept at all', async () => {
    const log = logOn();
    const jobId = newJob();
    const first = await log.append(jobId, ['a'.repeat(400), 'b'.repeat(400)], false);
    await log.append(jobId, ['c'.repeat(400)], false); // 1200 bytes: the first goes
    expect((await redis.hget(key('job-events', jobId, 'meta'), 'bytes'))).toBe('800');
    expect((await log.read(jobId, { epoch: first.epoch, seq: 0 })).entries.map((entry) => entry.seq)).toEqual([2, 3]);
    await log.append(jobId, ['d'.repeat(5000)], false);
    const page = await log.read(jobId, { epoch: first.epoch, seq: 3 });
    expect(page).toMatchObject({ gap: true, cursor: { seq: 4 }, entries: [] });
    expect(await redis.xlen(key('job-events', jobId))).toBe(0);
  });

  it('a Redis that lost the generation, or a log begun again, is a new epoch: the old cursor reads as a gap', async () => {
    const log = logOn();
    const jobId = newJob();
    const before = await log.append(jobId, ['{"i":1}', '{"i":2}'], false);
    await redis.del(key('job-events', jobId), key('job-events', jobId, 'meta'), key('generation'));
    expect(await log.read(jobId, { epoch: before.epoch, seq: 2 })).toEqual({ cursor: null, gap: true, entries: [] });
    const after = await log.append(jobId, ['{"i":3}'], false);
    expect(after.seq).toBe(1);
    expect(after.epoch).not.toBe(before.epoch);
    expect(await redis.get(key('generation'))).not.toBeNull(); // the append began the new generation
    const page = await log.read(jobId, { epoch: before.epoch, seq: 2 });
    expect(page).toMatchObject({ gap: true, cursor: { epoch: after.epoch, seq: 1 } });
    expect(page.entries).toEqual([{ seq: 1, text: '{"i":3}' }]);
    // The same generation but a log that expired and began again: a new epoch too.
    await redis.del(key('job-events', jobId), key('job-events', jobId, 'meta'));
    const again = await log.append(jobId, ['{"i":4}'], false);
    expect(again.epoch).not.toBe(after.epoch);
  });

  it('expires a running job\'s log after idleTtlSeconds, an ended one\'s after JOB_EVENT_LOG_GRACE_SECONDS, late events included', async () => {
    const log = logOn();
    const jobId = newJob();
    await log.append(jobId, ['{"i":1}'], false);
    expect(await redis.ttl(key('job-events', jobId))).toBeGreaterThan(JobEventLog.idleTtlSeconds - 10);
    await log.append(jobId, ['{"n":"job:end"}'], true);
    expect(await redis.ttl(key('job-events', jobId))).toBeLessThanOrEqual(120);
    await log.append(jobId, ['{"late":1}'], false);
    expect(await redis.ttl(key('job-events', jobId, 'meta'))).toBeLessThanOrEqual(120);
  });

  it('without a cursor, says only where the log stands (nothing yet: no cursor)', async () => {
    const log = logOn();
    const jobId = newJob();
    expect(await log.read(jobId, undefined)).toEqual({ cursor: null, gap: false, entries: [] });
    const first = await log.append(jobId, ['{"i":1}'], false);
    expect(await log.read(jobId, undefined)).toEqual({ cursor: first, gap: false, entries: [] });
  });
});
