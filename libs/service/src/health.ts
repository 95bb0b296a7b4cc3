import { HttpException, HttpStatus } from '@nestjs/common';

/** How long /health waits for each dependency before calling it down (a hung server must not hang the probe). */
export const healthCheckTimeoutMs = 2_000;

/** 'ok', or that a dependency is down with its error code (ECONNREFUSED, 57P03, ...) or 'timeout'; never its text. */
async function probe(check: () => Promise<unknown>): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('unavailable (timeout)'), healthCheckTimeoutMs);
  });
  const answer = check().then(
    () => 'ok',
    (error: unknown) => {
      const code = (error as { code?: unknown } | null)?.code;
      return typeof code === 'string' && /^[A-Za-z0-9_]{1,32}$/.test(code) ? `unavailable (${code})` : 'unavailable';
    },
  );
  try {
    return await Promise.race([answer, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The health body: ok, or degraded naming what is down (answered with HTTP 503). */
export interface HealthReport {
  status: 'ok' | 'degraded';
  postgres: string;
  redis: string;
  down: Array<'postgres' | 'redis'>;
}

/**
 * The /health answer of every service: `ok` when PostgreSQL and Redis answer within
 * healthCheckTimeoutMs; otherwise throws HTTP 503 `degraded`, naming what is down (`down`) and
 * its error code. The process keeps serving meanwhile: requests that need the missing dependency
 * fail EUNAVAILABLE, and the pools reconnect when it is back.
 */
export async function checkHealth(pingPostgres: () => Promise<unknown>, pingRedis: () => Promise<unknown>): Promise<HealthReport> {
  const [postgres, redis] = await Promise.all([probe(pingPostgres), probe(pingRedis)]);
  const down = [...(postgres === 'ok' ? [] : ['postgres' as const]), ...(redis === 'ok' ? [] : ['redis' as const])];
  if (down.length > 0) throw new HttpException({ status: 'degraded', postgres, redis, down } satisfies HealthReport, HttpStatus.SERVICE_UNAVAILABLE);
  return { status: 'ok', postgres, redis, down };
}
