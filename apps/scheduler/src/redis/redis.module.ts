import { Global, Inject, Injectable, Logger, Module, type OnApplicationShutdown } from '@nestjs/common';
import type { ConnectionOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { RedisGeneration } from '@commune/service';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';

/** Runs one Lua script with its ARGV. */
export type ScriptRunner = (...args: (string | number)[]) => Promise<unknown>;

/**
 * Redis connections. Redis holds only what can be rebuilt from Postgres (leases, ready queues,
 * counters, socket.io adapter traffic): losing it pauses work, never loses a result. `generation`
 * tells within about a second that Redis lost its data, so what lived there is rebuilt at once.
 */
@Injectable()
export class RedisConnections implements OnApplicationShutdown {
  /** Commands (leases, queues). */
  readonly command: Redis;
  /** The socket.io adapter's publisher and subscriber. */
  readonly publisher: Redis;
  readonly subscriber: Redis;
  readonly prefix: string;
  /** Redis's data generation (P:generation): listeners rebuild what Redis lost (see MaintenanceConsumer.recover). */
  readonly generation: RedisGeneration;
  /** How often the generation is read besides each reconnect. */
  static readonly generationCheckMs = 1000;

  constructor(@Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv) {
    this.prefix = env.REDIS_PREFIX;
    this.command = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 20, enableAutoPipelining: true });
    this.publisher = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 20 });
    this.subscriber = new Redis(env.REDIS_URL, { maxRetriesPerRequest: 20 });
    const logger = new Logger('RedisGeneration');
    this.generation = new RedisGeneration(this.command, {
      key: this.key('generation'),
      intervalMs: RedisConnections.generationCheckMs,
      warn: (message) => logger.warn(message),
    });
  }

  /**
   * Connection options for BullMQ, which then opens and closes its own connections (its blocking
   * workers need maxRetriesPerRequest: null).
   */
  bullmqConnection(): ConnectionOptions {
    return { url: this.env.REDIS_URL, maxRetriesPerRequest: null };
  }

  key(...parts: string[]): string {
    return `${this.prefix}:${parts.join(':')}`;
  }

  /**
   * Lua scripts as commands on the command connection (EVALSHA, loaded once per connection), named
   * `${namespace}_${name}`; each runner takes ARGV only (the scripts build their keys from the prefix).
   */
  scripts<Name extends string>(namespace: string, sources: Record<Name, string>): Record<Name, ScriptRunner> {
    const runners = {} as Record<Name, ScriptRunner>;
    for (const [name, lua] of Object.entries(sources) as [Name, string][]) {
      const command = `${namespace}_${name}`;
      if (!(command in this.command)) this.command.defineCommand(command, { numberOfKeys: 0, lua });
      const runner = (this.command as unknown as Record<string, ScriptRunner>)[command]!;
      runners[name] = (...args) => runner.call(this.command, ...args);
    }
    return runners;
  }

  /** After the socket.io server closed (it unsubscribes through these connections). */
  async onApplicationShutdown(): Promise<void> {
    this.generation.stop();
    // quit() lets replies in flight arrive; disconnect() would reject them.
    await Promise.all([this.command, this.publisher, this.subscriber].map((connection) => connection.quit().catch(() => connection.disconnect())));
  }
}

@Global()
@Module({ providers: [RedisConnections], exports: [RedisConnections] })
export class RedisModule {}
