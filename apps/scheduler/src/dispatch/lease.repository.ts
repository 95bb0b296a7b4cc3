import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { RedisConnections, type ScriptRunner } from '../redis/redis.module.js';
import {
  attachWorkerScript, claimScript, heldScript, leaseCapReply, leaseScript, openJobScript, rebuildJobScript, releaseWorkerScript, requeueRangesScript, requeueScript, returnScript, setEscrowedScript,
  setRunningScript, sweepScript,
} from './lease-scripts.js';


/** A job's dispatch state in Redis, as the reconciler reads it. */
export interface DispatchState {
  total: number;
  cursor: number;
  status: string;
  escrowed: number;
  queued: number;
}

/** What Postgres says a lost job's dispatch state is (see LeaseRepository.rebuildJob). */
export interface RebuiltJob {
  jobId: string;
  total: number;
  /** First slice never handed out. */
  cursor: number;
  status: 'running' | 'paused';
  /** DCC per slice ('0' for a free job) and the slices its escrow covers (total for a free job). */
  offerDcc: string;
  escrowed: number;
  /** Slices below the cursor with no result, as inclusive ranges. */
  missing: Array<[number, number]>;
}

export interface Lease {
  jobId: string;
  sliceIndexes: number[];
}

/** What a claim for results found: the task's job, which slices were claimed, and the slice time each may be credited. */
export interface Claim {
  jobId: string | null;
  claimed: boolean[];
  /** Per slice: its reported time bounded by what the scheduler observed of the task (see claimScript); 0 when not claimed. */
  boundedMs: number[];
}

/** How the scheduler bounds a claim's reported slice times. */
export interface ClaimBounds {
  now: number;
  /** Sandboxes the worker declared (slices of one task run at most this many at once). */
  sandboxes: number;
  /** No slice runs longer than this (the scheduler's SLICE_TIME_LIMIT_MS). */
  sliceLimitMs: number;
}

/** The only code that touches lease state in Redis; every operation is one atomic script. */
@Injectable()
export class LeaseRepository {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly scripts: Record<
    'lease' | 'claim' | 'held' | 'return' | 'releaseWorker' | 'attachWorker' | 'sweep' | 'requeue' | 'openJob' | 'setRunning' | 'setEscrowed' | 'rebuildJob' | 'requeueRanges',
    ScriptRunner
  >;

  constructor(connections: RedisConnections) {
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.scripts = connections.scripts('commune', {
      lease: leaseScript, claim: claimScript, held: heldScript, return: returnScript, releaseWorker: releaseWorkerScript, attachWorker: attachWorkerScript, sweep: sweepScript, requeue: requeueScript, openJob: openJobScript,
      setRunning: setRunningScript, setEscrowed: setEscrowedScript, rebuildJob: rebuildJobScript, requeueRanges: requeueRangesScript,
    });
  }

  /**
   * Registers a job for dispatch. A paid job carries its offer (DCC per slice, compared with
   * workers' minimum wage) and how many slices its escrow covers; it may start paused (ENOFUNDS).
   */
  async openJob(jobId: string, total: number, paid: { offerDcc: string; escrowedSlices: number; paused?: boolean } | null = null): Promise<void> {
    if (!paid) {
      await this.scripts.openJob(this.prefix, jobId, total);
      return;
    }
    await this.scripts.openJob(this.prefix, jobId, total, paid.offerDcc, paid.escrowedSlices, paid.paused ? 'paused' : 'running');
  }

  async setEscrowed(jobId: string, escrowedSlices: number): Promise<boolean> {
    return Number(await this.scripts.setEscrowed(this.prefix, jobId, escrowedSlices)) === 1;
  }

  /** How many ready jobs a lease looks at (least served first). */
  static readonly leaseCandidates = 16;
  /** How long a job skipped for unmet requirements says so in its status (unless leased meanwhile). */
  static readonly unmetTtlMs = 30_000;

  /**
   * Leases up to maxSlices of the least-served ready job (looking at `candidates` jobs) to a worker,
   * never one of `skip` (jobs whose requirements the worker does not meet; they are marked unmet).
   * `cap` (> 0) bounds the slices the worker holds leased at once: at the cap the answer is
   * `{ capped: held }` and nothing is leased.
   */
  async lease(
    workerId: string, taskId: string, maxSlices: number, deadline: number,
    wage: { minWageDcc: string; paidWork: boolean } = { minWageDcc: '0', paidWork: false }, candidates = LeaseRepository.leaseCandidates,
    skip: readonly string[] = [], cap = 0,
  ): Promise<Lease | { capped: number } | null> {
    const reply = (await this.scripts.lease(
      this.prefix, workerId, taskId, maxSlices, deadline, candidates, wage.minWageDcc, wage.paidWork ? '1' : '0', LeaseRepository.unmetTtlMs, cap, Date.now(), ...skip,
    )) as string[];
    if (reply.length === 0) return null;
    const [jobId, ...slices] = reply;
    if (jobId === leaseCapReply) return { capped: Number(slices[0]) };
    return { jobId: jobId!, sliceIndexes: slices.map(Number) };
  }

  /** Slices leased to a worker connection and awaiting a result. */
  async leasedCount(workerId: string): Promise<number> {
    return Number((await this.redis.get(`${this.prefix}:worker:${workerId}:leased`)) ?? 0);
  }

  /** Which of `sliceIndexes` of `jobId` the worker holds leased right now (in `taskId` if given). */
  async held(workerId: string, jobId: string, taskId: string | undefined, sliceIndexes: number[]): Promise<boolean[]> {
    if (sliceIndexes.length === 0) return [];
    const reply = (await this.scripts.held(this.prefix, workerId, jobId, taskId ?? '', ...sliceIndexes)) as number[];
    return reply.map((flag) => Number(flag) === 1);
  }

  /** The ids of the `count` least-served ready jobs (what a lease looks at). */
  async readyCandidates(count = LeaseRepository.leaseCandidates): Promise<string[]> {
    return this.redis.zrange(`${this.prefix}:ready`, '0', String(count - 1));
  }

  /** True while the job was recently skipped by a worker that does not meet its requirements and no worker leased it since. */
  async unmet(jobId: string): Promise<boolean> {
    return (await this.redis.exists(`${this.prefix}:job:${jobId}:unmet`)) === 1;
  }

  /** Puts back slices of a task (all when none are named); returns how many went back. */
  async returnSlices(taskId: string, workerId: string, sliceIndexes: number[] = []): Promise<number> {
    return Number(await this.scripts.return(this.prefix, taskId, workerId, ...sliceIndexes));
  }

  /**
   * How long a worker's latest connection is remembered (P:worker:<wid>:connection) as its latest
   * (a backstop against keys left by workers that never come back).
   */
  static readonly connectionTtlMs = 24 * 60 * 60 * 1000;

  /**
   * Records `connectionId` as the worker's latest connection; returns the slices the worker holds
   * leased from earlier ones (a worker back after its replica drained or died).
   */
  async attachWorker(workerId: string, connectionId: string): Promise<number> {
    return Number(await this.scripts.attachWorker(this.prefix, workerId, connectionId, LeaseRepository.connectionTtlMs));
  }

  /**
   * Puts back every slice leased to a worker whose connection `connectionId` went away; null (and
   * nothing changed) when the worker has connected again since, elsewhere or here.
   */
  async releaseWorker(workerId: string, connectionId: string): Promise<number | null> {
    const released = Number(await this.scripts.releaseWorker(this.prefix, workerId, connectionId));
    return released < 0 ? null : released;
  }

  async sweepExpired(now: number, limit = 500): Promise<number> {
    return Number(await this.scripts.sweep(this.prefix, now, limit));
  }

  async requeue(jobId: string, sliceIndexes: number[]): Promise<number> {
    if (sliceIndexes.length === 0) return 0;
    return Number(await this.scripts.requeue(this.prefix, jobId, ...sliceIndexes));
  }

  /** Pauses ('paused') or resumes ('running') handing out a job's slices; false when Redis has no live state for it. */
  async setRunning(jobId: string, status: 'running' | 'paused'): Promise<boolean> {
    return Number(await this.scripts.setRunning(this.prefix, jobId, status)) === 1;
  }

  /** Stops handing out a job's slices (finished, cancelled or failed). */
  async closeJob(jobId: string, status: string): Promise<void> {
    const jobKey = `${this.prefix}:job:${jobId}`;
    await this.redis.multi().hset(jobKey, 'status', status).del(`${jobKey}:requeue`).zrem(`${this.prefix}:ready`, jobId).exec();
  }

  /** Marks every slice as handed out, so only the reconciler's requeues feed the job. */
  async markExhausted(jobId: string): Promise<void> {
    const jobKey = `${this.prefix}:job:${jobId}`;
    const total = await this.redis.hget(jobKey, 'total');
    if (total !== null) await this.redis.hset(jobKey, 'cursor', total);
  }

  /** Forgets a closed job's keys (after late results had time to be refused). */
  async forgetJob(jobId: string): Promise<void> {
    const jobKey = `${this.prefix}:job:${jobId}`;
    await this.redis.del(jobKey, `${jobKey}:requeue`, `${jobKey}:attempts`, `${jobKey}:unmet`, `${jobKey}:met`, `${jobKey}:slicetimes`);
  }

  /** Slices handed out so far (never-leased slices start at `cursor`). */
  async distributed(jobId: string): Promise<number | null> {
    const cursor = await this.redis.hget(`${this.prefix}:job:${jobId}`, 'cursor');
    return cursor === null ? null : Number(cursor);
  }

  /** A paid job's dispatch cursor and how many slices its escrow covers in Redis (null when Redis has no such job). */
  async escrowState(jobId: string): Promise<{ cursor: number; escrowed: number } | null> {
    const [cursor, escrowed] = await this.redis.hmget(`${this.prefix}:job:${jobId}`, 'cursor', 'escrowed');
    return cursor === null ? null : { cursor: Number(cursor), escrowed: Number(escrowed ?? 0) };
  }

  async jobState(jobId: string): Promise<{ total: number; cursor: number; status: string; queued: number } | null> {
    const jobKey = `${this.prefix}:job:${jobId}`;
    const [fields, queued] = await Promise.all([this.redis.hmget(jobKey, 'total', 'cursor', 'status'), this.redis.llen(`${jobKey}:requeue`)]);
    if (fields[0] === null) return null;
    return { total: Number(fields[0]), cursor: Number(fields[1]), status: String(fields[2]), queued };
  }

  /** Counts a failed attempt of a slice; returns the attempts so far. */
  async countAttempt(jobId: string, sliceIndex: number): Promise<number> {
    return this.redis.hincrby(`${this.prefix}:job:${jobId}:attempts`, String(sliceIndex), 1);
  }

  /** Ranges per script call (an ARGV of at most 10,000 numbers: a call's arguments stay well within V8's and Redis's limits). */
  static readonly rangesPerCall = 5_000;

  /** The dispatch state of each job (null where Redis has none), read in one pipeline. */
  async dispatchStates(jobIds: readonly string[]): Promise<Map<string, DispatchState | null>> {
    const states = new Map<string, DispatchState | null>();
    if (jobIds.length === 0) return states;
    const pipeline = this.redis.pipeline();
    for (const jobId of jobIds) {
      const jobKey = `${this.prefix}:job:${jobId}`;
      pipeline.hmget(jobKey, 'total', 'cursor', 'status', 'escrowed');
      pipeline.llen(`${jobKey}:requeue`);
    }
    const replies = (await pipeline.exec()) ?? [];
    jobIds.forEach((jobId, i) => {
      const [fieldsError, fields] = replies[2 * i] ?? [new Error('no reply')];
      const [queuedError, queued] = replies[2 * i + 1] ?? [new Error('no reply')];
      if (fieldsError || queuedError) throw fieldsError ?? queuedError;
      const [total, cursor, status, escrowed] = fields as Array<string | null>;
      states.set(jobId, total === null || total === undefined
        ? null
        : { total: Number(total), cursor: Number(cursor), status: String(status), escrowed: Number(escrowed ?? total), queued: Number(queued) });
    });
    return states;
  }

  /**
   * Rebuilds a job whose state Redis lost (one atomic script; several calls for a job with very many
   * missing ranges, the first creating the state). False when the job already had a state (its
   * deploy opened it, or another replica rebuilt it first): nothing was changed then.
   */
  async rebuildJob(job: RebuiltJob): Promise<{ rebuilt: boolean; queued: number }> {
    const first = job.missing.slice(0, LeaseRepository.rangesPerCall);
    const queued = Number(await this.scripts.rebuildJob(
      this.prefix, job.jobId, job.total, job.cursor, job.status, job.offerDcc, job.escrowed, ...first.flat(),
    ));
    if (queued < 0) return { rebuilt: false, queued: 0 };
    const rest = job.missing.slice(LeaseRepository.rangesPerCall);
    return { rebuilt: true, queued: queued + (await this.requeueRanges(job.jobId, rest)) };
  }

  /** Puts back slices given as inclusive ranges; returns how many were queued. */
  async requeueRanges(jobId: string, ranges: ReadonlyArray<[number, number]>): Promise<number> {
    let queued = 0;
    for (let i = 0; i < ranges.length; i += LeaseRepository.rangesPerCall) {
      queued += Number(await this.scripts.requeueRanges(this.prefix, jobId, ...ranges.slice(i, i + LeaseRepository.rangesPerCall).flat()));
    }
    return queued;
  }

  /** The jobs that have leased tasks out right now (one ZRANGE and one pipeline, for the reconciler). */
  async jobsWithOpenLeases(): Promise<Set<string>> {
    const taskIds = await this.redis.zrange(`${this.prefix}:leases`, '0', '-1');
    const jobs = new Set<string>();
    if (taskIds.length === 0) return jobs;
    const pipeline = this.redis.pipeline();
    for (const taskId of taskIds) pipeline.hget(`${this.prefix}:task:${taskId}`, 'jobId');
    for (const [, value] of (await pipeline.exec()) ?? []) if (typeof value === 'string') jobs.add(value);
    return jobs;
  }

  /** Leased tasks of a job still out (for the reconciler). */
  async hasOpenLeases(jobId: string): Promise<boolean> {
    const taskIds = await this.redis.zrange(`${this.prefix}:leases`, '0', '-1');
    if (taskIds.length === 0) return false;
    const pipeline = this.redis.pipeline();
    for (const taskId of taskIds) pipeline.hget(`${this.prefix}:task:${taskId}`, 'jobId');
    const replies = (await pipeline.exec()) ?? [];
    return replies.some(([, value]) => value === jobId);
  }
}
