import { Global, Inject, Injectable, Logger, Module, type OnApplicationShutdown } from '@nestjs/common';
import type { ConnectionOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { RedisGeneration } from '@commune/service';
import { BANK_ENV, type BankEnv } from '../config/env.js';

/**
 * Redis serves the bank only for background work (BullMQ: expire-holds, the bridge's queues).
 * Money never lives there: losing Redis delays expiry, it never loses a transfer. `generation`
 * notices within about a second that Redis lost its data, and the consumers create their
 * schedules again (HoldExpiryConsumer, BridgeConsumer).
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  /** Commands (health checks). */
  readonly command: Redis;
  readonly prefix: string;
  /** Redis's data generation (P:generation): listeners re-create what Redis lost. */
  readonly generation: RedisGeneration;
  /** How often the generation is read besides each reconnect. */
  static readonly generationCheckMs = 1000;

  constructor(@Inject(BANK_ENV) private readonly env: BankEnv) {
    this.prefix = env.REDIS_PREFIX;
    this.command = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 20 });
    const logger = new Logger('RedisGeneration');
    this.generation = new RedisGeneration(this.command, {
      key: `${this.prefix}:generation`,
      intervalMs: RedisConnections.generationCheckMs,
      warn: (message) => logger.warn(message),
    });
  }

  /** Connection options for BullMQ, which opens and closes its own connections (blocking workers need maxRetriesPerRequest: null). */
  bullmqConnection(): ConnectionOptions {
    return { url: this.env.REDIS_URL, maxRetriesPerRequest: null };
  }

  /** BullMQ prefix of the bank's queues. */
  get bullPrefix(): string {
    return `${this.prefix}:bull`;
  }

  async onApplicationShutdown(): Promise<void> {
    this.generation.stop();
    await this.command.quit().catch(() => this.command.disconnect());
  }
}

@Global()
@Module({ providers: [RedisConnections], exports: [RedisConnections] })
export class RedisModule {}
