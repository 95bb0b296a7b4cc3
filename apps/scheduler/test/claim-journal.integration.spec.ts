import { LeaseRepository } from '../src/dispatch/lease.repository.js';
import { RedisConnections } from '../src/redis/redis.module.js';
import { ClaimJournal } from '../src/results/claim-journal.js';
import type { SchedulerEnv } from '../src/config/env.js';
import { dropIsolated, isolatedEnvironment } from '../../../test/support/services.js';

/**
 * The claim journal on real Redis: results claimed but not stored are never stranded. A batch
 * that stored its results forgets its claim; one whose storing failed gives the slices back to
 * the worker's lease (so the worker's resend is taken); a claim whose scheduler died is swept
 * back to the job's queue at its deadline.
 */
describe('claim journal (real Redis)', () => {
  const env = isolatedEnvironment();
  let connections: RedisConnections;
  let leases: LeaseRepository;
  let journal: ClaimJournal;
  const bounds = (now: number) => ({ now, sandboxes: 1, sliceLimitMs: 60_000 });
  const results = (slices: number[]) => slices.map((sliceIndex) => ({ sliceIndex, elapsedMs: 5 }));
  let n = 0;

  beforeAll(() => {
    connections = new RedisConnections(env as unknown as SchedulerEnv);
    leases = new LeaseRepository(connections);
    journal = new ClaimJournal(connections);
  });
  afterAll(async () => {
    await connections.onApplicationShutdown();
    await dropIsolated(env);
  });

  /** A fresh job of `total` slices and a lease of all of them to `worker`. */
  async function leased(total: number, worker: string): Promise<{ jobId: string; taskId: string; slices: number[] }> {
    // The previous test's job is closed, so this lease sees only this job.
    if (n > 0) await leases.closeJob(`j${n}`, 'finished');
    const jobId = `j${++n}`;
    const taskId = `t${n}`;
    await leases.openJob(jobId, total);
    const lease = await leases.lease(worker, taskId, total, Date.now() + 60_000);
    if (!lease || 'capped' in lease) throw new Error('no lease');
    expect(lease.jobId).toBe(jobId);
    return { jobId, taskId, slices: lease.sliceIndexes };
  }

  it('journals what it claims, exactly as LeaseRepository.claim answers, and forgets it on release', async () => {
    const { jobId, taskId } = await leased(5, 'w1');
    const now = Date.now();
    const claim = await journal.claim('c1', taskId, 'w1', results([0, 1, 2, 9]), now + 60_000, bounds(now), now + 10_000);
    expect(claim.jobId).toBe(jobId);
    expect(claim.claimed).toEqual([true, true, true, false]);
    expect(await journal.pending()).toBe(1);
    expect(await connections.command.hget(`${env.REDIS_PREFIX}:claim:c1`, 'slices')).toMatch(/^0:[\d.]+,1:[\d.]+,2:[\d.]+$/);
    // Nothing claimed: nothing journaled.
    await journal.claim('c2', taskId, 'w1', results([0]), now + 60_000, bounds(now), now + 10_000);
    await journal.claim('c3', taskId, 'intruder', results([3]), now + 60_000, bounds(now), now + 10_000);
    expect(await journal.pending()).toBe(1);
    await journal.release('c1');
    expect(await journal.pending()).toBe(0);
    expect(await journal.sweep(Date.now() + 60_000)).toEqual({ lost: 0, unsent: 0 });
    // The two unclaimed slices are still the worker's.
    expect(await leases.held('w1', jobId, taskId, [0, 1, 2, 3, 4])).toEqual([false, false, false, true, true]);
  });

  it('restore: slices whose results were not stored go back to the same lease, and the worker can claim them again', async () => {
    const { jobId, taskId } = await leased(4, 'w2');
    const now = Date.now();
    // The claim takes every slice, so the task itself is gone afterwards.
    const first = await journal.claim('c4', taskId, 'w2', results([0, 1, 2, 3]), now + 60_000, bounds(now), now + 10_000);
    expect(first.claimed).toEqual([true, true, true, true]);
    expect(await leases.leasedCount('w2')).toBe(0);
    expect(await leases.held('w2', jobId, taskId, [0, 1, 2, 3])).toEqual([false, false, false, false]);
    // Slice 0 was stored, 1..3 were not: only those come back, and a slice not in the claim is ignored.
    expect(await journal.restore('c4', [1, 2, 3, 7], Date.now() + 8_000)).toBe(3);
    // The entry now waits for the resend (the restored slices).
    expect(await journal.pending()).toBe(1);
    expect(await leases.held('w2', jobId, taskId, [0, 1, 2, 3])).toEqual([false, true, true, true]);
    expect(await leases.leasedCount('w2')).toBe(3);
    // The resend is taken, and another worker's is not.
    const later = Date.now();
    expect((await journal.claim('c5', taskId, 'w3', results([1]), later + 60_000, bounds(later), later + 10_000)).claimed).toEqual([false]);
    const again = await journal.claim('c6', taskId, 'w2', results([1, 2, 3]), later + 60_000, bounds(later), later + 10_000);
    expect(again).toMatchObject({ jobId, claimed: [true, true, true] });
    await journal.release('c6');
    // Sent again in time: the window's end puts nothing on the queue, so no slice is handed out twice.
    expect(await journal.sweep(Date.now() + 8_000)).toEqual({ lost: 0, unsent: 0 });
    expect(await journal.pending()).toBe(0);
    expect((await leases.jobState(jobId))?.queued).toBe(0);
  });

  it('restore: slices the worker does not send again within the window go to the queue; the rest of its task stays leased', async () => {
    const { jobId, taskId } = await leased(5, 'w4');
    const now = Date.now();
    await journal.claim('c7', taskId, 'w4', results([0, 1, 2]), now + 60_000, bounds(now), now + 10_000);
    expect(await journal.restore('c7', [0, 1, 2], now + 500)).toBe(3);
    expect(await journal.restore('c7', [0, 1, 2], now + 500)).toBe(0);
    // The worker sends slice 0 again (taken); 1 and 2 never come.
    const again = await journal.claim('c8', taskId, 'w4', results([0]), now + 60_000, bounds(now), now + 10_000);
    expect(again.claimed).toEqual([true]);
    await journal.release('c8');
    expect(await journal.sweep(now + 499)).toEqual({ lost: 0, unsent: 0 });
    expect(await journal.sweep(now + 500)).toEqual({ lost: 0, unsent: 2 });
    expect(await journal.pending()).toBe(0);
    expect((await leases.jobState(jobId))?.queued).toBe(2);
    // Slices 3 and 4, never claimed, are still the worker's, under their own lease deadline.
    expect(await leases.held('w4', jobId, taskId, [0, 1, 2, 3, 4])).toEqual([false, false, false, true, true]);
    expect(await leases.leasedCount('w4')).toBe(2);
    expect(await leases.sweepExpired(Date.now())).toBe(0);
  });

  it('restore of a whole task: if nothing is sent again the recreated task is gone after the window', async () => {
    const { jobId, taskId } = await leased(2, 'w9');
    const now = Date.now();
    await journal.claim('c11', taskId, 'w9', results([0, 1]), now + 60_000, bounds(now), now + 10_000);
    expect(await journal.restore('c11', [0, 1], now + 300)).toBe(2);
    expect(await journal.sweep(now + 300)).toEqual({ lost: 0, unsent: 2 });
    expect((await leases.jobState(jobId))?.queued).toBe(2);
    expect(await leases.leasedCount('w9')).toBe(0);
    expect(await connections.command.exists(`${env.REDIS_PREFIX}:task:${taskId}`)).toBe(0);
    expect(await connections.command.zscore(`${env.REDIS_PREFIX}:leases`, taskId)).toBeNull();
  });

  it('sweep: a claim its scheduler never settled goes back to the job queue at its deadline, not before', async () => {
    const { jobId, taskId } = await leased(6, 'w5');
    const now = Date.now();
    await journal.claim('c8', taskId, 'w5', results([1, 3, 5]), now + 60_000, bounds(now), now + 5_000);
    expect(await journal.sweep(now + 4_999)).toEqual({ lost: 0, unsent: 0 });
    expect((await leases.jobState(jobId))?.queued).toBe(0);
    expect(await journal.sweep(now + 5_000)).toEqual({ lost: 3, unsent: 0 });
    expect(await journal.pending()).toBe(0);
    expect((await leases.jobState(jobId))?.queued).toBe(3);
    // Another worker leases exactly those three again.
    const lease = await leases.lease('w6', 'tnext', 10, Date.now() + 60_000);
    expect(lease).toMatchObject({ jobId });
    expect([...(lease as { sliceIndexes: number[] }).sliceIndexes].sort()).toEqual([1, 3, 5]);
  });

  it('a closed job takes nothing back, by restore or by sweep', async () => {
    const { jobId, taskId } = await leased(3, 'w7');
    const now = Date.now();
    await journal.claim('c9', taskId, 'w7', results([0]), now + 60_000, bounds(now), now + 1_000);
    await journal.claim('c10', taskId, 'w7', results([1]), now + 60_000, bounds(now), now + 60_000);
    await leases.closeJob(jobId, 'cancelled');
    expect(await journal.sweep(now + 1_000)).toEqual({ lost: 0, unsent: 0 });
    expect(await journal.restore('c10', [1], Date.now() + 8_000)).toBe(0);
    expect(await journal.pending()).toBe(0);
  });
});
