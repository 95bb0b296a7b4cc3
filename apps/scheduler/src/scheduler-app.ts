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
import { ReplicaLifecycle, type DrainReport } from './health/replica-lifecycle.js';

/** prisma/scheduler/migrations, found from src/ (tests) or dist/ (built). */
export const migrationsDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../../prisma/scheduler/migrations');

export interface SchedulerApp {
  app: INestApplication;
  env: SchedulerEnv;
  url: string;
  /** Hands this replica's workers and clients to the others (ReplicaLifecycle.drain), without closing it. */
  drain(): Promise<DrainReport>;
  /** Closes at once (what a drain ends with). */
  close(): Promise<void>;
}

/** Signals Nest's own shutdown hooks handle (close at once); SIGTERM and SIGINT drain first (drainSignals). */
const closeSignals = ['SIGHUP', 'SIGQUIT', 'SIGUSR2'] as const;
const drainSignals = ['SIGTERM', 'SIGINT'] as const;

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
  app.enableShutdownHooks([...closeSignals]);
  await app.listen(env.PORT, env.HOST);
  const address = app.getHttpServer().address() as { port: number };
  const url = `http://127.0.0.1:${address.port}`;

  const lifecycle = app.get(ReplicaLifecycle);
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      for (const signal of drainSignals) process.off(signal, onSignal);
      lifecycle.closing();
      await app.close();
    })();
    return closed;
  };
  // SIGTERM (Kubernetes, docker stop) or SIGINT: drain, close, then die of the signal as Nest's
  // own hooks do. A second signal cuts the drain short.
  let stopping = false;
  function onSignal(signal: NodeJS.Signals): void {
    if (stopping) {
      logger.warn(`${signal} again: closing without finishing the drain`, 'Shutdown');
      lifecycle.cutShort();
      return;
    }
    stopping = true;
    lifecycle
      .drain()
      .catch((error: unknown) => logger.error(`the drain failed: ${(error as Error).message}`, undefined, 'Shutdown'))
      .then(close)
      .catch((error: unknown) => logger.error(`closing failed: ${(error as Error).message}`, undefined, 'Shutdown'))
      .finally(() => process.kill(process.pid, signal));
  }
  for (const signal of drainSignals) process.on(signal, onSignal);
  return { app, env, url, drain: () => lifecycle.drain(), close };
}
