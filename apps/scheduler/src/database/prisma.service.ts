import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { connectTimeoutMs, survivePostgresRestarts } from '@commune/service';

/**
 * The scheduler's Prisma client over node-postgres (driver adapter: no query engine binary).
 * `pool` is exposed for the few hot-path statements written as raw SQL in repositories.
 */
@Injectable()
export class PrismaService extends PrismaClient implements OnApplicationShutdown {
  readonly pool: pg.Pool;
  private readonly logger = new Logger('Database');

  constructor(@Inject(SCHEDULER_ENV) env: SchedulerEnv) {
    const pool = new pg.Pool({
      connectionString: env.DATABASE_URL,
      max: 10,
      options: `-c search_path="${env.DATABASE_SCHEMA}"`,
      // A server that stops answering (a failover, a paused host) fails the request instead of hanging it.
      connectionTimeoutMillis: connectTimeoutMs,
      keepAlive: true,
    });
    super({ adapter: new PrismaPg(pool, { schema: env.DATABASE_SCHEMA }) });
    survivePostgresRestarts(pool, this.logger);
    this.pool = pool;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.$disconnect();
    await this.pool.end().catch(() => undefined);
  }
}
