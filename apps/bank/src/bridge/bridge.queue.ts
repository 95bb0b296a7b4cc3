import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Queue } from 'bullmq';
import { RedisConnections } from '../redis/redis.module.js';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';

export const BRIDGE_QUEUE = 'bridge';
export type BridgeJobName = 'scan-deposits' | 'send-withdrawals';

/**
 * The bridge's background work (BullMQ): two repeating jobs, the deposit watcher and the
 * withdrawal sender, every BRIDGE_POLL_INTERVAL_MS; a new withdrawal also wakes the sender at
 * once. Redis holds only the schedule: every fact lives in Postgres (bridge_* tables), so a lost
 * Redis delays the bridge by about a second (BridgeConsumer creates the schedules again when
 * RedisConnections.generation sees the loss) and loses nothing.
 */
@Injectable()
export class BridgeQueue implements OnModuleDestroy {
  private queueInstance: Queue | null = null;

  constructor(
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
    private readonly connections: RedisConnections,
  ) {}

  get queue(): Queue {
    this.queueInstance ??= new Queue(BRIDGE_QUEUE, {
      connection: this.connections.bullmqConnection(),
      prefix: this.connections.bullPrefix,
      defaultJobOptions: { removeOnComplete: 100, removeOnFail: 500 },
    });
    return this.queueInstance;
  }

  /** One schedule shared by all replicas (BullMQ keeps one per scheduler id). */
  async schedule(): Promise<void> {
    const every = this.settings.pollIntervalMs;
    await this.queue.upsertJobScheduler('bridge-scan-deposits', { every }, { name: 'scan-deposits', data: {} });
    await this.queue.upsertJobScheduler('bridge-send-withdrawals', { every }, { name: 'send-withdrawals', data: {} });
  }

  /** Wakes the sender now; requests arriving together share one run (same job id). */
  async sendWithdrawalsNow(): Promise<void> {
    if (!this.settings.enabled) return;
    await this.queue.add('send-withdrawals', {}, { jobId: 'send-withdrawals-now', removeOnComplete: true, removeOnFail: true });
  }

  async onModuleDestroy(): Promise<void> {
    await this.queueInstance?.close();
  }
}
