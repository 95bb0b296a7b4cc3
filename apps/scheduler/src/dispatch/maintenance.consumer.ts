import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { Worker, type Job } from 'bullmq';
import type { RedisLossReason } from '@commune/service';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { PrismaService } from '../database/prisma.service.js';
import { JobsService } from '../jobs/jobs.service.js';
import { Metrics } from '../health/metrics.js';
import { RedisConnections } from '../redis/redis.module.js';
import { JobCatalog } from './job-catalog.js';
import { LeaseRepository, type RebuiltJob } from './lease.repository.js';
import { MAINTENANCE_QUEUE, MaintenanceQueue } from './maintenance.queue.js';
import { WorkerNotifier } from './worker-notifier.js';
import { PaymentsService } from '../payments/payments.service.js';
import { unitsToDcc } from '../payments/domain/pricing.js';

/** A running or paused job as the reconciler reads it from Postgres. */
interface ReconciledJob {
  id: string;
  total: number;
  computed: number;
  status: 'running' | 'paused';
  offerUnits: string;
  escrowedSlices: number;
  /** Created less than deployGraceMs ago. */
  young: boolean;
}

/** What one reconcile pass did. */
export interface ReconcileOutcome {
  /** Jobs whose dispatch state Redis had lost, rebuilt from Postgres. */
  rebuilt: number;
  /** Slices put back (on rebuilt jobs, and slices of live jobs with neither a result nor a lease). */
  requeued: number;
  /** Jobs whose last result was stored but not announced, ended now. */
  ended: number;
}

/**
 * Runs the maintenance jobs on every replica (BullMQ hands each to one of them):
 * - sweep-leases: expired leases put their slices back;
 * - reconcile: rebuilds what Redis lost from Postgres (a job's dispatch state, slices with no
 *   result and no lease, a paid job's escrow) and finishes jobs whose last result was stored but
 *   not announced;
 * - forget-job: drops a closed job's Redis keys.
 * When Redis loses its data (RedisConnections.generation notices within about a second), the
 * schedules above, which lived in Redis, are created again and a reconcile runs at once.
 */
@Injectable()
export class MaintenanceConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(MaintenanceConsumer.name);
  private worker: Worker | null = null;
  /** Running and paused jobs looked at per reconcile pass (oldest first). */
  static readonly maxJobsPerPass = 1000;
  /**
   * A lost job never leased and younger than this is left to its deploy (which stores it, escrows,
   * then opens it in Redis): its deploy may still be under way. One that was leased is rebuilt at once.
   */
  static readonly deployGraceMs = 5_000;
  /** One reconcile at a time in this process (the schedule's and a recovery's). */
  private reconciling: Promise<ReconcileOutcome> | null = null;

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly connections: RedisConnections,
    private readonly queue: MaintenanceQueue,
    private readonly leases: LeaseRepository,
    private readonly prisma: PrismaService,
    private readonly jobs: JobsService,
    private readonly catalog: JobCatalog,
    private readonly notifier: WorkerNotifier,
    private readonly metrics: Metrics,
    private readonly payments: PaymentsService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.worker = new Worker(MAINTENANCE_QUEUE, (job) => this.process(job), {
      connection: this.connections.bullmqConnection(),
      prefix: `${this.env.REDIS_PREFIX}:bull`,
      concurrency: 1,
    });
    this.worker.on('failed', (job, error) => this.logger.warn(`maintenance ${job?.name} failed: ${error.message}`));
    this.worker.on('error', (error) => this.logger.warn(`maintenance worker: ${error.message}`));
    await this.queue.schedule();
    this.connections.generation.onLoss((reason) => this.recover(reason));
    await this.connections.generation.start();
  }

  /**
   * After Redis lost its data (or came up empty at boot): the maintenance schedules are created
   * again (they lived in Redis) and every running or paused job's dispatch state is rebuilt from
   * Postgres now, so work resumes within seconds. Every replica runs it; each step is idempotent.
   */
  async recover(reason: RedisLossReason): Promise<ReconcileOutcome> {
    const started = Date.now();
    await this.queue.schedule();
    // A pass that began before the loss may have read the state Redis had then: wait for it, then make a fresh one.
    await this.reconciling?.catch(() => undefined);
    const outcome = await this.reconcile();
    this.notifier.workAvailable();
    const what = reason === 'boot' ? 'Redis had no generation at boot' : 'Redis lost its data';
    this.logger.warn(`${what}: schedules created again, ${outcome.rebuilt} jobs rebuilt from Postgres (${outcome.requeued} slices queued, ${outcome.ended} ended) in ${Date.now() - started} ms`);
    return outcome;
  }

  async process(job: Job): Promise<unknown> {
    switch (job.name) {
      case 'sweep-leases':
        return this.sweep();
      case 'reconcile':
        return this.reconcile();
      case 'settle-payments':
        return this.settlePayments();
      case 'forget-job':
        await this.leases.forgetJob((job.data as { jobId: string }).jobId);
        this.catalog.forget((job.data as { jobId: string }).jobId);
        return null;
      default:
        throw new Error(`unknown maintenance job ${job.name}`);
    }
  }

  /** Posts payments, re-escrows jobs that run out of escrow (pausing those that cannot pay), releases ended jobs' holds. */
  async settlePayments(): Promise<{ settled: number; paused: number; released: number }> {
    const settled = await this.payments.settle();
    const paused = await this.payments.reescrowRunning();
    for (const jobId of paused) await this.jobs.announce(jobId);
    const released = await this.payments.releaseEnded();
    return { settled, paused: paused.length, released };
  }

  async sweep(): Promise<number> {
    const returned = await this.leases.sweepExpired(Date.now());
    if (returned > 0) {
      this.metrics.slicesReturned.inc(returned);
      this.logger.log(`${returned} slices of expired leases put back`);
      this.notifier.workAvailable();
    }
    return returned;
  }

  /** One pass over every running and paused job (see reconcileOnce); concurrent calls share it. */
  reconcile(): Promise<ReconcileOutcome> {
    this.reconciling ??= this.reconcileOnce().finally(() => {
      this.reconciling = null;
    });
    return this.reconciling;
  }

  /**
   * Set-based: one query for the jobs, one Redis pipeline for their states, one query for the
   * high-water marks of the jobs Redis lost and one for the gaps in their results, then one script
   * per job (auto-pipelined). A lost job comes back with its cursor past every slice ever leased
   * (the lease journal) or answered, and the slices below it with no result queued; its escrow is
   * what Postgres recorded. A live job whose every slice is handed out, with nothing queued and
   * nothing leased, gets its slices with no result put back.
   */
  private async reconcileOnce(): Promise<ReconcileOutcome> {
    const outcome: ReconcileOutcome = { rebuilt: 0, requeued: 0, ended: 0 };
    const jobs = await this.openJobs();
    const live: ReconciledJob[] = [];
    for (const job of jobs) {
      if (job.computed < job.total) {
        live.push(job);
        continue;
      }
      if (job.status === 'running' && (await this.jobs.endJob(job.id, 'finished', null))) outcome.ended++;
    }
    const states = await this.leases.dispatchStates(live.map((job) => job.id));
    let lost = live.filter((job) => states.get(job.id) === null);
    if (lost.length > 0) {
      const highs = await this.highWaterMarks(lost.map((job) => job.id));
      lost = lost.filter((job) => !job.young || (highs.get(job.id) ?? 0) > 0);
      const missing = await this.gaps(lost.map((job) => ({ id: job.id, below: Math.min(job.total, highs.get(job.id) ?? 0) })));
      const rebuilt = await Promise.all(lost.map((job) => {
        const paid = job.offerUnits !== '0';
        const state: RebuiltJob = {
          jobId: job.id, total: job.total, cursor: Math.min(job.total, highs.get(job.id) ?? 0), status: job.status,
          offerDcc: paid ? unitsToDcc(job.offerUnits) : '0', escrowed: paid ? job.escrowedSlices : job.total, missing: missing.get(job.id) ?? [],
        };
        return this.leases.rebuildJob(state);
      }));
      for (const [i, result] of rebuilt.entries()) {
        if (!result.rebuilt) continue;
        outcome.rebuilt++;
        outcome.requeued += result.queued;
        this.logger.warn(`job ${lost[i]!.id} had no dispatch state in Redis; rebuilt from Postgres (${result.queued} slices queued)`);
      }
    }
    // An escrow step recorded in Postgres whose Redis update was lost (or raced a rebuild): Redis only ever goes up to it.
    await Promise.all(live.filter((job) => {
      const state = states.get(job.id);
      return job.offerUnits !== '0' && state && state.escrowed < job.escrowedSlices;
    }).map((job) => this.leases.setEscrowed(job.id, job.escrowedSlices)));
    const exhausted = live.filter((job) => {
      const state = states.get(job.id);
      return state && state.status === 'running' && state.cursor >= state.total && state.queued === 0;
    });
    if (exhausted.length > 0) {
      const leased = await this.leases.jobsWithOpenLeases();
      const idle = exhausted.filter((job) => !leased.has(job.id));
      const missing = await this.gaps(idle.map((job) => ({ id: job.id, below: job.total })));
      for (const job of idle) {
        const ranges = missing.get(job.id);
        if (!ranges || ranges.length === 0) continue;
        const queued = await this.leases.requeueRanges(job.id, ranges);
        outcome.requeued += queued;
        this.logger.warn(`job ${job.id}: ${queued} slices had neither a result nor a lease; put back`);
      }
    }
    if (outcome.requeued > 0 || outcome.rebuilt > 0) this.notifier.workAvailable();
    return outcome;
  }

  private async openJobs(): Promise<ReconciledJob[]> {
    const rows = await this.prisma.pool.query<{ id: string; total: string; computed: string; status: 'running' | 'paused'; offer: string; escrowed: string; young: boolean }>(
      `SELECT id, total, computed, status, offer_units::text AS offer, escrowed_slices AS escrowed,
         created_at > now() - make_interval(secs => $2::double precision / 1000) AS young
       FROM jobs WHERE status IN ('running', 'paused') ORDER BY created_at LIMIT $1`,
      [MaintenanceConsumer.maxJobsPerPass, MaintenanceConsumer.deployGraceMs],
    );
    return rows.rows.map((row) => ({
      id: row.id, total: Number(row.total), computed: Number(row.computed), status: row.status, offerUnits: row.offer, escrowedSlices: Number(row.escrowed), young: row.young,
    }));
  }

  /** Per job: the first slice past every journalled lease and every result (0 for a job never leased). */
  private async highWaterMarks(jobIds: string[]): Promise<Map<string, number>> {
    const rows = await this.prisma.pool.query<{ id: string; high: string }>(
      `SELECT j.id, greatest(
         coalesce((SELECT max(l.last_slice) + 1 FROM slice_leases l WHERE l.job_id = j.id), 0),
         coalesce((SELECT max(r.slice_index) + 1 FROM slice_results r WHERE r.job_id = j.id), 0)) AS high
       FROM jobs j WHERE j.id = ANY($1::text[])`,
      [jobIds],
    );
    return new Map(rows.rows.map((row) => [row.id, Number(row.high)]));
  }

  /** Per job: the slices below `below` with no result, as inclusive ranges (one statement for all the jobs). */
  private async gaps(jobs: Array<{ id: string; below: number }>): Promise<Map<string, Array<[number, number]>>> {
    const gaps = new Map<string, Array<[number, number]>>();
    const wanted = jobs.filter((job) => job.below > 0);
    if (wanted.length === 0) return gaps;
    const rows = await this.prisma.pool.query<{ id: string; first: string; last: string }>(
      `WITH j AS (SELECT * FROM unnest($1::text[], $2::bigint[]) AS t(id, below)),
       s AS (
         SELECT r.job_id AS id, r.slice_index AS s FROM j JOIN slice_results r ON r.job_id = j.id AND r.slice_index < j.below
         UNION ALL SELECT id, below FROM j
       ),
       g AS (SELECT id, s, lag(s, 1, (-1)::bigint) OVER (PARTITION BY id ORDER BY s) AS prev FROM s)
       SELECT id, prev + 1 AS first, s - 1 AS last FROM g WHERE s - prev > 1 ORDER BY id, first`,
      [wanted.map((job) => job.id), wanted.map((job) => job.below)],
    );
    for (const row of rows.rows) {
      const list = gaps.get(row.id) ?? [];
      list.push([Number(row.first), Number(row.last)]);
      gaps.set(row.id, list);
    }
    return gaps;
  }

  async onModuleDestroy(): Promise<void> {
    await this.worker?.close();
  }
}
