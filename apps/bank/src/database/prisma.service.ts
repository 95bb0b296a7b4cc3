import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { connectTimeoutMs, survivePostgresRestarts } from '@commune/service';

/**
 * The bank's Prisma client over node-postgres (driver adapter: no query engine binary).
 * `pool` is exposed for the ledger's transactions, written as raw SQL in ledger.repository.ts
 * (row locks in a fixed order, bulk statements); Prisma serves the plain reads.
 */
@Injectable()
export class PrismaService extends PrismaClient implements OnApplicationShutdown {
  readonly pool: pg.Pool;
  private readonly logger = new Logger('Database');

  constructor(@Inject(BANK_ENV) env: BankEnv) {
    const pool = new pg.Pool({
      connectionString: env.DATABASE_URL,
      max: env.DATABASE_POOL_SIZE,
      options: `-c search_path="${env.DATABASE_SCHEMA}" -c statement_timeout=${env.DATABASE_STATEMENT_TIMEOUT_MS}`,
      // A server that stops answering (a failover, a paused host) fails the request instead of hanging it.
      connectionTimeoutMillis: connectTimeoutMs,
      keepAlive: true,
    });
    super({ adapter: new PrismaPg(pool, { schema: env.DATABASE_SCHEMA }) });
    // A PostgreSQL restart must not end the bank: idle and checked-out clients (the ledger's
    // transactions, the bridge's advisory-lock holders) all get an 'error' listener.
    survivePostgresRestarts(pool, this.logger);
    this.pool = pool;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.$disconnect();
    await this.pool.end().catch(() => undefined);
  }
}
