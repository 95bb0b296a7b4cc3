import { Inject, Injectable, OnApplicationShutdown } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.js';
import { BANK_ENV, type BankEnv } from '../config/env.js';

/**
 * The bank's Prisma client over node-postgres (driver adapter: no query engine binary).
 * `pool` is exposed for the ledger's transactions, written as raw SQL in ledger.repository.ts
 * (row locks in a fixed order, bulk statements); Prisma serves the plain reads.
 */
@Injectable()
export class PrismaService extends PrismaClient implements OnApplicationShutdown {
  readonly pool: pg.Pool;

  constructor(@Inject(BANK_ENV) env: BankEnv) {
    const pool = new pg.Pool({
      connectionString: env.DATABASE_URL,
      max: env.DATABASE_POOL_SIZE,
      options: `-c search_path="${env.DATABASE_SCHEMA}" -c statement_timeout=${env.DATABASE_STATEMENT_TIMEOUT_MS}`,
    });
    super({ adapter: new PrismaPg(pool, { schema: env.DATABASE_SCHEMA }) });
    this.pool = pool;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.$disconnect();
    await this.pool.end().catch(() => undefined);
  }
}
