#!/usr/bin/env node
import { loadSchedulerEnv } from './config/env.js';
import { applyMigrations } from '@commune/migrator';
import { migrationsDir } from './scheduler-app.js';

/** `pnpm migrate`: applies the scheduler's committed migrations (same as at start-up). */
const env = loadSchedulerEnv();
applyMigrations({ databaseUrl: env.DATABASE_URL, schema: env.DATABASE_SCHEMA, migrationsDir, log: (line) => console.log(line) })
  .then((applied) => console.log(applied.length ? `applied ${applied.length} migration(s)` : 'schema is up to date'))
  .catch((error: unknown) => {
    console.error(`migration failed: ${(error as Error).message}`);
    process.exit(1);
  });
