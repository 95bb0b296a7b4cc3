import { Global, Inject, Injectable, Module, type OnApplicationShutdown } from '@nestjs/common';
import type { ConnectionOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { BANK_ENV, type BankEnv } from '../config/env.js';

/**
 * Redis serves the bank only for background work (BullMQ: expire-holds, the bridge's queues).
 * Money never lives there: losing Redis delays expiry, it never loses a transfer.
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  /** Commands (health checks). */
  readonly command: Redis;
  readonly prefix: string;

  constructor(@Inject(BANK_ENV) private readonly env: BankEnv) {
    this.prefix = env.REDIS_PREFIX;
    this.command = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 20 });
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
    await this.command.quit().catch(() => this.command.disconnect());
  }
}

@Global()
@Module({ providers: [RedisConnections], exports: [RedisConnections] })
export class RedisModule {}
