import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from './processes.js';
import { uniqueName, waitFor, within } from './services.js';

/**
 * Redis and PostgreSQL instances of a test's own, for chaos suites that break them or run under
 * faults (../shared/NOTES.md "Services of your own"): each on a free port, never the machine's
 * services on 5432/6379, and gone after `stop()` whatever happened.
 */

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface OwnRedis {
  port: number;
  url: string;
  /** `redis-cli shutdown nosave` (everything in memory is gone), then a fresh redis-server on the same port. Returns when each happened. */
  restart(): Promise<{ downAt: number; upAt: number }>;
  /** Shuts it down without saving (SIGKILL if it has not exited within 3 s). */
  stop(): Promise<void>;
}

/** A redis-server on a free port with nothing on disk; resolves once it answers PING. */
export async function startOwnRedis(): Promise<OwnRedis> {
  const port = await freePort();
  let server: ChildProcess | null = null;
  const start = async () => {
    server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
    await waitFor(`redis-server on ${port}`, () => spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout.trim() === 'PONG', 10_000, 50);
  };
  const running = () => server !== null && server.exitCode === null && server.signalCode === null;
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    async restart() {
      const current = server!;
      const exited = new Promise((resolve) => current.once('exit', resolve));
      const downAt = Date.now();
      spawnSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave']);
      await within(exited, 5000, 'redis-server to exit').catch(() => current.kill('SIGKILL'));
      await sleep(500); // a restart takes a moment: clients see refused connections meanwhile
      await start();
      return { downAt, upAt: Date.now() };
    },
    async stop() {
      if (!running()) return;
      const current = server!;
      spawnSync('redis-cli', ['-p', String(port), 'shutdown', 'nosave']);
      await within(new Promise((resolve) => current.once('exit', resolve)), 3000, 'redis-server to exit').catch(() => undefined);
      if (current.exitCode === null && current.signalCode === null) current.kill('SIGKILL');
    },
  };
}

export interface OwnPostgres {
  /** The cluster's name (pg_lsclusters). */
  cluster: string;
  port: number;
  /** `postgresql://postgres@127.0.0.1:<port>/commune`, a database that exists. */
  url: string;
  /** Stops and drops the cluster (its data directory goes with it). */
  stop(): Promise<void>;
}

/**
 * A PostgreSQL 15 cluster of the test's own (pg_createcluster on a free port, trust auth, as
 * NOTES.md describes), started, with a `commune` database in it. A failed start drops what it created.
 */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  const cluster = uniqueName('chaos_pg').toLowerCase();
  const port = await freePort();
  const drop = () => run('pg_dropcluster', ['--stop', '15', cluster], { timeout: 60_000 }).then(() => undefined);
  await run('pg_createcluster', ['15', cluster, '--port', String(port), '--', '--auth=trust'], { timeout: 60_000 });
  try {
    await run('pg_ctlcluster', ['--skip-systemctl-redirect', '15', cluster, 'start'], { timeout: 60_000 });
    const pg = (await import('pg')).default;
    const admin = new pg.Client({ connectionString: `postgresql://postgres@127.0.0.1:${port}/postgres` });
    await admin.connect();
    try {
      await admin.query('CREATE DATABASE commune');
    } finally {
      await admin.end().catch(() => undefined);
    }
  } catch (error) {
    await drop().catch(() => undefined);
    throw error;
  }
  return { cluster, port, url: `postgresql://postgres@127.0.0.1:${port}/commune`, stop: drop };
}
