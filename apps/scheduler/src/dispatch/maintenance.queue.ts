import { Inject, Injectable, OnModuleDestroy } from '@nestjs/common';
import { Queue } from 'bullmq';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { RedisConnections } from '../redis/redis.module.js';

export const MAINTENANCE_QUEUE = 'maintenance';
export type MaintenanceJob =
  | { name: 'sweep-leases'; data: Record<string, never> }
  | { name: 'reconcile'; data: Record<string, never> }
  | { name: 'forget-job'; data: { jobId: string } }
  | { name: 'settle-payments'; data: Record<string, never> };

/** Background work of the scheduler (BullMQ): lease sweeping, reconciliation, job finalisation. */
@Injectable()
export class MaintenanceQueue implements OnModuleDestroy {
  readonly queue: Queue;
  /** How long a closed job's Redis keys stay so late results are still refused by name. */
  static readonly forgetAfterMs = 60_000;

  constructor(@Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv, connections: RedisConnections) {
    this.queue = new Queue(MAINTENANCE_QUEUE, {
      connection: connections.bullmqConnection(),
      prefix: `${env.REDIS_PREFIX}:bull`,
      defaultJobOptions: { removeOnComplete: 100, removeOnFail: 500, attempts: 3, backoff: { type: 'exponential', delay: 500 } },
    });
  }

  /**
   * Repeating jobs: one schedule shared by all replicas (BullMQ deduplicates by id). Idempotent: it
   * runs at boot and again whenever Redis lost its data (MaintenanceConsumer.recover).
   */
  async schedule(): Promise<void> {
    await this.queue.upsertJobScheduler('sweep-leases', { every: this.env.LEASE_SWEEP_INTERVAL_MS }, { name: 'sweep-leases', data: {} });
    await this.queue.upsertJobScheduler('reconcile', { every: Math.max(5_000, this.env.LEASE_SWEEP_INTERVAL_MS * 5) }, { name: 'reconcile', data: {} });
    // Payments go to the bank in batches off the dispatch path (a slow bank never slows results).
    if (this.env.BANK_URL) {
      await this.queue.upsertJobScheduler('settle-payments', { every: this.env.SETTLEMENT_INTERVAL_MS }, { name: 'settle-payments', data: {} });
    }
  }

  async forgetJobLater(jobId: string): Promise<void> {
    await this.queue.add('forget-job', { jobId }, { delay: MaintenanceQueue.forgetAfterMs, jobId: `forget-${jobId}` });
  }

  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
  }
}
