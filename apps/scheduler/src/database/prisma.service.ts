import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';

/**
 * The scheduler's Prisma client over node-postgres (driver adapter: no query engine binary).
 * `pool` is exposed for the few hot-path statements written as raw SQL in repositories.
 */
@Injectable()
export class PrismaService extends PrismaClient implements OnApplicationShutdown {
  readonly pool: pg.Pool;
  private readonly logger = new Logger('Database');

  constructor(@Inject(SCHEDULER_ENV) env: SchedulerEnv) {
    const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 10, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
    super({ adapter: new PrismaPg(pool, { schema: env.DATABASE_SCHEMA }) });
    // An idle connection the server terminates (a PostgreSQL restart or failover) is an 'error'
    // event on the pool; without a listener it would be an uncaught exception that ends the
    // process. The pool drops that connection and opens a new one on the next query.
    pool.on('error', (error) => this.logger.warn(`idle PostgreSQL connection lost: ${error.message}`));
    this.pool = pool;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.$disconnect();
    await this.pool.end().catch(() => undefined);
  }
}
