import 'reflect-metadata';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NestFactory } from '@nestjs/core';
import type { INestApplication } from '@nestjs/common';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { AppModule } from './app.module.js';
import { loadSchedulerEnv, type SchedulerEnv } from './config/env.js';
import { applyMigrations } from '@commune/migrator';
import { PinoLogger } from '@commune/logging';
import { ErrorCode } from '@commune/protocol';
import { ServiceExceptionFilter } from '@commune/service';
import { RedisConnections } from './redis/redis.module.js';
import { RedisIoAdapter } from './redis/redis-io.adapter.js';

/** prisma/scheduler/migrations, found from src/ (tests) or dist/ (built). */
export const migrationsDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../../prisma/scheduler/migrations');

export interface SchedulerApp {
  app: INestApplication;
  env: SchedulerEnv;
  url: string;
  close(): Promise<void>;
}

/** Migrates, builds and starts a scheduler replica. Used by main.ts and by integration tests. */
export async function startScheduler(overrides: Partial<Record<keyof SchedulerEnv, string>> = {}): Promise<SchedulerApp> {
  const env = loadSchedulerEnv({ ...process.env, ...overrides });
  const logger = new PinoLogger('scheduler', env.LOG_LEVEL);
  await applyMigrations({ databaseUrl: env.DATABASE_URL, schema: env.DATABASE_SCHEMA, migrationsDir, log: (line) => logger.log(line, 'Migrations') });
  const app = await NestFactory.create<NestExpressApplication>(AppModule.forEnv(env), { logger, abortOnError: false });
  // JSON bodies (appliance publications) may carry up to MAX_WORK_BYTES of sources; above twice that
  // the body is refused before parsing, below it the appliance checks answer EWORKTOOBIG.
  app.useBodyParser('json', { limit: Math.max(2 * env.MAX_WORK_BYTES + 64 * 1024, 100 * 1024) });
  // Every error of every REST endpoint leaves as {ok:false, code, message} with its code's status.
  app.useGlobalFilters(new ServiceExceptionFilter(ErrorCode.ESCHEDULER));
  const redis = app.get(RedisConnections);
  app.useWebSocketAdapter(new RedisIoAdapter(app, redis.publisher, redis.subscriber, env.MAX_MESSAGE_BYTES, `${env.REDIS_PREFIX}:io`));
  app.enableShutdownHooks();
  await app.listen(env.PORT, env.HOST);
  const address = app.getHttpServer().address() as { port: number };
  const url = `http://127.0.0.1:${address.port}`;
  return { app, env, url, close: () => app.close() };
}
