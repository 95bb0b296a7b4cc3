import type { Logger } from '@nestjs/common';

/** How long a new PostgreSQL connection may take before the pool gives up (the request then fails EUNAVAILABLE). */
export const connectTimeoutMs = 5_000;

/** The part of a node-postgres Pool this needs (so this library does not depend on pg). */
interface PostgresPool {
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'connect', listener: (client: { on(event: 'error', listener: (error: Error) => void): unknown }) => void): unknown;
}

/**
 * Keeps a PostgreSQL restart, crash or failover from ending the process. node-postgres reports a
 * connection the server terminates as an 'error' event: on the pool for an idle client, on the
 * client itself for one checked out (a transaction, an advisory-lock holder). An 'error' event
 * with no listener is an uncaught exception, so both get one; the pool drops the dead client and
 * opens a new connection on the next query, and the query that was running fails with the
 * error (EUNAVAILABLE to the peer). Lost connections are logged once per second at most, with a
 * count, so an outage does not flood the log.
 */
export function survivePostgresRestarts(pool: PostgresPool, logger: Pick<Logger, 'warn'>): void {
  let lost = 0;
  let lastLog = 0;
  const onLost = (error: Error): void => {
    lost++;
    const now = Date.now();
    if (now - lastLog < 1_000) return;
    lastLog = now;
    logger.warn(`PostgreSQL connection lost (${lost} so far): ${error.message}; the pool reconnects on the next query`);
  };
  pool.on('error', onLost);
  pool.on('connect', (client) => client.on('error', onLost));
}
