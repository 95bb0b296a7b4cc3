import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { Worker, type Job } from 'bullmq';
import { RedisConnections } from '../redis/redis.module.js';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BRIDGE_QUEUE, BridgeQueue } from './bridge.queue.js';
import { DepositWatcher } from './deposit-watcher.service.js';
import { WithdrawalSender } from './withdrawal-sender.service.js';

/**
 * Runs the bridge's jobs in this process (BullMQ hands each run to one replica; an advisory lock in
 * each job keeps a slow run and the next one from overlapping). Their schedules are created again
 * whenever Redis loses its data (RedisConnections.generation). Concurrency 1: the watcher and the
 * sender take turns, so the chain sees one sender.
 */
@Injectable()
export class BridgeConsumer implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(BridgeConsumer.name);
  private worker: Worker | null = null;

  constructor(
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
    private readonly connections: RedisConnections,
    private readonly queue: BridgeQueue,
    private readonly deposits: DepositWatcher,
    private readonly withdrawals: WithdrawalSender,
    private readonly metrics: BridgeMetrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.settings.enabled) {
      this.logger.log(`Ethereum bridge disabled: ${this.settings.reason}`);
      return;
    }
    this.worker = new Worker(BRIDGE_QUEUE, (job) => this.process(job), {
      connection: this.connections.bullmqConnection(),
      prefix: this.connections.bullPrefix,
      concurrency: 1,
    });
    this.worker.on('failed', (job, error) => {
      this.metrics.chainErrors.inc({ task: job?.name ?? 'unknown' });
      this.logger.warn(`bridge ${job?.name} failed: ${error.message}`);
    });
    this.worker.on('error', (error) => this.logger.warn(`bridge worker: ${error.message}`));
    await this.queue.schedule();
    // The schedules live in Redis: after Redis lost its data they are created again (deposits made meanwhile are found by the next scan).
    this.connections.generation.onLoss(async () => {
      await this.queue.schedule();
      this.logger.warn('Redis lost its data: the bridge schedules were created again');
    });
    await this.connections.generation.start();
    const { chain } = this.settings;
    this.logger.log(
      `Ethereum bridge on ${chain.rpcUrl}: vault ${chain.vault}, token ${chain.token}, ${this.settings.confirmations} confirmations, every ${this.settings.pollIntervalMs} ms`,
    );
  }

  async process(job: Job): Promise<unknown> {
    switch (job.name) {
      case 'scan-deposits':
        return this.deposits.run();
      case 'send-withdrawals':
        return this.withdrawals.run();
      default:
        throw new Error(`unknown bridge job ${job.name}`);
    }
  }

  async onModuleDestroy(): Promise<void> {
    await this.worker?.close();
  }
}
