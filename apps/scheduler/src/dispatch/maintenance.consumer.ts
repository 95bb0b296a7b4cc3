import { Inject, Injectable, Logger, OnApplicationBootstrap, OnModuleDestroy } from '@nestjs/common';
import { Worker, type Job } from 'bullmq';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { JobsRepository } from '../jobs/jobs.repository.js';
import { JobsService } from '../jobs/jobs.service.js';
import { Metrics } from '../health/metrics.js';
import { RedisConnections } from '../redis/redis.module.js';
import { JobCatalog } from './job-catalog.js';
import { LeaseRepository } from './lease.repository.js';
import { MAINTENANCE_QUEUE, MaintenanceQueue } from './maintenance.queue.js';
import { WorkerNotifier } from './worker-notifier.js';
import { PaymentsService } from '../payments/payments.service.js';
import { unitsToDcc } from '../payments/domain/pricing.js';

/**
 * Runs the maintenance jobs on every replica (BullMQ hands each to one of them):
 * - sweep-leases: expired leases put their slices back;
 * - reconcile: rebuilds what Redis lost from Postgres (a job's dispatch state, slices with no
 *   result and no lease) and finishes jobs whose last result was stored but not announced;
 * - forget-job: drops a closed job's Redis keys.
 */
@Injectable()
export class MaintenanceConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(MaintenanceConsumer.name);
  private worker: Worker | null = null;
  /** Missing slices requeued per job per reconcile pass. */
  static readonly maxRequeuePerPass = 10_000;
  /** Jobs younger than this are left to their deploy (which stores, escrows, then opens them). */
  static readonly deployGraceMs = 30_000;

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly connections: RedisConnections,
    private readonly queue: MaintenanceQueue,
    private readonly leases: LeaseRepository,
    private readonly jobsRepository: JobsRepository,
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
    await this.queue.schedule();
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

  async reconcile(): Promise<number> {
    let requeued = 0;
    // A job is stored in Postgres before its deploy opens it in Redis (after escrow): reconciling
    // it in between would open it a second time, exhausted, with every slice put back.
    for (const job of await this.jobsRepository.running(1000, MaintenanceConsumer.deployGraceMs)) {
      if (job.computed >= job.total) {
        await this.jobs.endJob(job.id, 'finished', null);
        continue;
      }
      let state = await this.leases.jobState(job.id);
      if (!state) {
        // Redis lost this job: everything without a result is found again below.
        this.logger.warn(`job ${job.id} had no dispatch state in Redis; rebuilding it from Postgres`);
        // A paid job comes back paid: workers below its offer or with no earnings account still skip it.
        const paid = await this.payments.paidJob(job.id);
        const offered = paid !== null && paid.offerUnits !== '0';
        await this.leases.openJob(job.id, job.total, offered ? { offerDcc: unitsToDcc(paid.offerUnits), escrowedSlices: paid.escrowedSlices } : null);
        await this.leases.markExhausted(job.id);
        state = await this.leases.jobState(job.id);
        if (!state) continue;
      }
      if (state.cursor < state.total || state.queued > 0 || (await this.leases.hasOpenLeases(job.id))) continue;
      const missing = await this.jobsRepository.missingSlices(job.id, job.total, MaintenanceConsumer.maxRequeuePerPass);
      if (missing.length > 0) {
        requeued += await this.leases.requeue(job.id, missing);
        this.logger.warn(`job ${job.id}: ${missing.length} slices had neither a result nor a lease; put back`);
      }
    }
    if (requeued > 0) this.notifier.workAvailable();
    return requeued;
  }

  async onModuleDestroy(): Promise<void> {
    await this.worker?.close();
  }
}
