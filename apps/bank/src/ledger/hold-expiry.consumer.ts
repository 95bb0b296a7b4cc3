import { Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { Worker, type Job } from 'bullmq';
import { RedisConnections } from '../redis/redis.module.js';
import { BANK_MAINTENANCE_QUEUE, EXPIRE_HOLDS_JOB, HoldExpiryQueue } from './hold-expiry.queue.js';
import { LedgerService } from './ledger.service.js';

/**
 * Runs `expire-holds`: holds past their expiry go back to their accounts (BullMQ hands each run to
 * one process). The schedule is created again whenever Redis loses its data (RedisConnections.generation).
 */
@Injectable()
export class HoldExpiryConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(HoldExpiryConsumer.name);
  private worker: Worker | null = null;

  constructor(
    private readonly connections: RedisConnections,
    private readonly queue: HoldExpiryQueue,
    private readonly ledger: LedgerService,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    this.worker = new Worker(BANK_MAINTENANCE_QUEUE, (job) => this.process(job), {
      connection: this.connections.bullmqConnection(),
      prefix: this.connections.bullPrefix,
      concurrency: 1,
    });
    this.worker.on('failed', (job, error) => this.logger.warn(`${job?.name ?? 'job'} failed: ${error.message}`));
    this.worker.on('error', (error) => this.logger.warn(`bank maintenance worker: ${error.message}`));
    await this.queue.schedule();
    // The schedule lives in Redis: after Redis lost its data it is created again (and holds due meanwhile expire at once).
    this.connections.generation.onLoss(async () => {
      await this.queue.schedule();
      this.logger.warn('Redis lost its data: the expire-holds schedule was created again');
    });
    await this.connections.generation.start();
  }

  async process(job: Job): Promise<unknown> {
    if (job.name === EXPIRE_HOLDS_JOB) return this.ledger.expireDueHolds();
    throw new Error(`unknown bank job ${job.name}`);
  }

  async onModuleDestroy(): Promise<void> {
    await this.worker?.close();
  }
}
