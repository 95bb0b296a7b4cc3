#!/usr/bin/env node
import { applyMigrations } from '@commune/migrator';
import { migrationsDir } from './bank-app.js';
import { loadBankEnv } from './config/env.js';

/** Applies the bank's committed migrations (the same as at start-up). */
const env = loadBankEnv();
applyMigrations({ databaseUrl: env.DATABASE_URL, schema: env.DATABASE_SCHEMA, migrationsDir, log: (line) => console.log(line) })
  .then((applied) => console.log(applied.length ? `applied ${applied.length} migration(s)` : 'schema is up to date'))
  .catch((error: unknown) => {
    console.error(`migration failed: ${(error as Error).message}`);
    process.exit(1);
  });
