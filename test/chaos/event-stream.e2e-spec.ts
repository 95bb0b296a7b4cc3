import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { init } from '@commune/client';
import { startTwoReplicaCommune, type TwoReplicaCommune } from '../support/processes.js';
import { isolatedEnvironment, waitFor, within } from '../support/services.js';

/**
 * Issue 8, item 6: resumable job event streams. Two real scheduler replicas sharing PostgreSQL
 * and Redis, two real `commune-worker`s on replica B, and the SDK in this process given both
 * URLs, so it is on replica A. The job's work writes a console line and emits a custom event per
 * slice (and reports progress). Replica A is killed (SIGKILL) while the workers keep sending
 * events through B; the SDK reconnects to B with the cursor of the last event it delivered and
 * must deliver every console and custom event exactly once, in the order of the job's event log
 * (the exact sequence, read from the log in Redis afterwards). The Redis-lost case (the gap
 * fallback) is covered by apps/scheduler/src/jobs/job-events.integration.spec.ts (real replicas,
 * the log and generation deleted) and the client's connection/job-event-order specs.
 */
describe('job event streams across a replica kill (chaos, e2e)', () => {
  const SLICES = 600;
  const env = isolatedEnvironment({ LEASE_TIMEOUT_MS: '5000', LEASE_SWEEP_INTERVAL_MS: '500' });
  const home = mkdtempSync(join(tmpdir(), 'commune-event-stream-'));
  let commune: TwoReplicaCommune | undefined;
  const redis = new Redis(env.REDIS_URL!, { lazyConnect: true });

  beforeAll(async () => {
    commune = await startTwoReplicaCommune(env);
    await redis.connect();
  }, 60_000);

  afterAll(async () => {
    redis.disconnect();
    await commune?.stop().catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  }, 30_000);

  /** Each slice says something, emits its index and busy-waits a few ms, so events keep flowing while replica A dies. */
  const sliceWork = (i: number) => {
    console.log(`line ${i}`);
    work.emit('tick', i);
    const until = Date.now() + 8;
    while (Date.now() < until) progress(0.5);
    progress(1);
    return i;
  };

  /** The console and custom events of the job's log, in sequence order, up to its end. */
  async function loggedSequence(jobId: string): Promise<string[]> {
    const entries = await redis.xrange(`${env.REDIS_PREFIX}:job-events:${jobId}`, '-', '+');
    const sequence: string[] = [];
    let expected = 1;
    for (const [id, fields] of entries) {
      expect(Number(id.split('-')[0])).toBe(expected++); // nothing was trimmed: the whole log is there
      const logged = JSON.parse(fields[1]!) as { n: string; d?: { entries?: Array<{ message: string }>; events?: Array<{ event: string; value: unknown }> } };
      if (logged.n === 'job:end') break;
      if (logged.n === 'job:console') for (const entry of logged.d!.entries!) sequence.push(`console ${entry.message}`);
      if (logged.n === 'job:custom') for (const event of logged.d!.events!) sequence.push(`${event.event} ${String(event.value)}`);
    }
    return sequence;
  }

  it('delivers every console and custom event exactly once, in log order, after the client\'s replica is killed', async () => {
    const { replicaA, replicaB } = commune!;
    const { compute } = await init({ scheduler: [replicaA.url, replicaB.url], home });
    const job = compute.for(0, SLICES - 1, sliceWork);
    const heard: string[] = [];
    job.on('console', (event: { message: string }) => heard.push(`console ${event.message}`));
    job.work.on('tick', (value: unknown) => heard.push(`tick ${String(value)}`));
    let statusEvents = 0;
    job.on('status', () => statusEvents++);
    const connects: Array<{ scheduler: string; downtimeMs: number }> = [];
    job.on('connect', (event: { scheduler: string; downtimeMs: number }) => connects.push(event));
    const running = job.exec();
    running.catch(() => undefined);

    await waitFor('a sixth of the events through replica A', () => heard.length >= (2 * SLICES) / 6, 30_000, 10);
    const before = heard.length;
    const killedAt = Date.now();
    replicaA.kill('SIGKILL');
    await replicaA.exited;
    await waitFor('the SDK on replica B again', () => connects.length > 0, 20_000, 10);
    const results = await within(running, 60_000, 'exec() after the kill');
    const done = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 200)); // events still in flight after the end, if any

    expect(Array.from(results)).toEqual(Array.from({ length: SLICES }, (_, i) => i));
    expect(connects[0]!.scheduler).toBe(`${replicaB.url}/`);
    const logged = await loggedSequence(job.id as string);
    // Every event up to the end, in the log's order, each once (a copy would shift the sequence).
    expect(heard.slice(0, logged.length)).toEqual(logged);
    const lines = heard.filter((entry) => entry.startsWith('console '));
    const ticks = heard.filter((entry) => entry.startsWith('tick '));
    expect(new Set(lines).size).toBe(lines.length);
    expect(new Set(ticks).size).toBe(ticks.length);
    expect(before).toBeLessThan(2 * SLICES); // the kill happened while events were flowing
    expect(statusEvents).toBeGreaterThan(0);
    process.stdout.write(
      `[chaos event-stream] replica A killed after ${before} of ${2 * SLICES} console/custom events; following the job on B ${connects[0]!.downtimeMs} ms later; ` +
        `exec() resolved ${done - killedAt} ms after the kill; ${heard.length} events delivered, the ${logged.length} logged before the end in log order, each once\n`,
    );
  }, 120_000);
});

declare function progress(value?: number | string): boolean;
declare const work: { emit(name: string, value: unknown): void };
