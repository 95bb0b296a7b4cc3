import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Queue } from 'bullmq';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { RedisConnections } from '../redis/redis.module.js';

export const BANK_MAINTENANCE_QUEUE = 'bank-maintenance';
export const EXPIRE_HOLDS_JOB = 'expire-holds';

/** The bank's background work (BullMQ): the repeatable `expire-holds` job. */
@Injectable()
export class HoldExpiryQueue implements OnModuleDestroy {
  readonly queue: Queue;

  constructor(@Inject(BANK_ENV) private readonly env: BankEnv, connections: RedisConnections) {
    this.queue = new Queue(BANK_MAINTENANCE_QUEUE, {
      connection: connections.bullmqConnection(),
      prefix: connections.bullPrefix,
      defaultJobOptions: { removeOnComplete: 100, removeOnFail: 500, attempts: 3, backoff: { type: 'exponential', delay: 500 } },
    });
  }

  /**
   * One schedule shared by every bank process (BullMQ keeps one scheduler per id). Idempotent: it
   * runs at boot and again after Redis lost its data (HoldExpiryConsumer).
   */
  async schedule(): Promise<void> {
    await this.queue.upsertJobScheduler(EXPIRE_HOLDS_JOB, { every: this.env.HOLD_SWEEP_INTERVAL_MS }, { name: EXPIRE_HOLDS_JOB, data: {} });
  }

  async onModuleDestroy(): Promise<void> {
    await this.queue.close();
  }
}
