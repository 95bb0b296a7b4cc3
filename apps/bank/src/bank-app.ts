import 'reflect-metadata';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { applyMigrations } from '@commune/migrator';
import { AppModule } from './app.module.js';
import { DEV_SERVICE_TOKEN, loadBankEnv, type BankEnv } from './config/env.js';
import { useNativeKeccak } from './crypto/native-keccak.js';
import { setupOpenApi } from './http/openapi.js';
import { transfersFastPath } from './http/transfers-fast-path.js';
import { LedgerService } from './ledger/ledger.service.js';
import { PinoLogger } from '@commune/logging';

/** prisma/bank/migrations, found from src/ (tests) or dist/ (built). */
export const migrationsDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../../prisma/bank/migrations');

export interface BankApp {
  app: NestExpressApplication;
  env: BankEnv;
  url: string;
  close(): Promise<void>;
}

/**
 * Puts `handler` in front of the HTTP server's request listeners (Express, which Nest installed):
 * it sees each request first and passes on the ones it does not take (`next`). Express's own
 * dispatch (its init and query middleware, the router's walk over every layer) costs about
 * 0.1 ms of CPU per request, which signed transfers skip.
 */
function serveFirst(server: Server, handler: (request: IncomingMessage, response: ServerResponse, next: () => void) => void): void {
  const listeners = server.listeners('request') as Array<(request: IncomingMessage, response: ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (request: IncomingMessage, response: ServerResponse) =>
    handler(request, response, () => {
      for (const listener of listeners) listener.call(server, request, response);
    }),
  );
}

/** Migrates, builds and starts the bank. Used by main.ts, integration tests and bench/ledger.mjs. */
export async function startBank(overrides: Partial<Record<keyof BankEnv, string>> = {}): Promise<BankApp> {
  const source = { ...process.env, ...overrides };
  const env = loadBankEnv(source);
  const logger = new PinoLogger('bank', env.LOG_LEVEL);
  if (!useNativeKeccak()) logger.warn('the native keccak binding did not load: hashing uses ethers’ JS keccak (slower signed requests)', 'Bank');
  if (env.BANK_DEV_MODE) {
    logger.warn(
      env.BANK_SERVICE_TOKEN === DEV_SERVICE_TOKEN
        ? `BANK_DEV_MODE=1 and no BANK_SERVICE_TOKEN: holds and payments answer the PUBLIC development token "${DEV_SERVICE_TOKEN}"; anyone who reaches this bank can move held money. Never run a bank so where others can reach it.`
        : 'BANK_DEV_MODE=1: a development bank (it would also start without BANK_SERVICE_TOKEN). Never run a bank so in production.',
      'Bank',
    );
  }
  await applyMigrations({ databaseUrl: env.DATABASE_URL, schema: env.DATABASE_SCHEMA, migrationsDir, log: (line) => logger.log(line, 'Migrations') });
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forEnv(env, source), { logger, abortOnError: false, bodyParser: false });
  // Signed transfers take their own path to the ledger, ahead of Express, the body parser and Nest's routes (see transfers-fast-path.ts).
  serveFirst(app.getHttpServer() as Server, transfersFastPath(app.get(LedgerService), env.MAX_BODY_BYTES));
  app.useBodyParser('json', { limit: env.MAX_BODY_BYTES });
  setupOpenApi(app);
  app.enableShutdownHooks();
  await app.listen(env.PORT, env.HOST);
  const address = app.getHttpServer().address() as { port: number };
  const url = `http://127.0.0.1:${address.port}`;
  return { app, env, url, close: () => app.close() };
}
