// Helpers shared by bench/connections.mjs and bench/replicas.mjs: child processes that are always
// ended, /proc readings (RSS, CPU time, file descriptor limit), a Redis of the bench's own, and the
// cleanup of the bench's PostgreSQL schema and Redis keys.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { Redis } from 'ioredis';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../..');

/** Every process the bench started, ended by endChildren() whatever happens. */
const children = [];

export function spawnNode(args, { env = {}, stdio = ['ignore', 'ignore', 'inherit'], name = args[0] } = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio });
  child.benchName = name;
  children.push(child);
  return child;
}

/** Tracks a process started some other way (child_process.fork) so that endChildren() ends it too. */
export function track(child, name) {
  child.benchName = name;
  children.push(child);
  return child;
}

/** SIGINT, up to `graceMs` to exit, then SIGKILL; only the bench's own children, by pid. */
export async function endChildren(list = children, graceMs = 3000) {
  const alive = list.filter((child) => child.exitCode === null && child.signalCode === null);
  for (const child of alive) child.kill('SIGINT');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && alive.some((child) => child.exitCode === null && child.signalCode === null)) await sleep(100);
  for (const child of alive) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const child of alive) if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once('exit', resolve));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export async function waitFor(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

export const percentile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

/** VmRSS and VmHWM (peak) of a process, MB. */
export function rssOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(/\s(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(name + ':')))[1]) / 1024;
  return { rssMb: field('VmRSS'), peakMb: field('VmHWM') };
}

let clockTicks = 0;
/** User + system CPU seconds a process has used so far (/proc/PID/stat fields 14 and 15). */
export function cpuSecondsOf(pid) {
  clockTicks ||= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** A process's open-files limit (soft, hard) as /proc says it. */
export function openFilesLimit(pid = process.pid) {
  const line = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/);
  return { soft: Number(soft), hard: Number(hard) };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * A Redis of the bench's own on a free port (no persistence), so that what the scheduler asks of
 * Redis and the CPU Redis spends can be measured without other users of the machine's Redis.
 */
export async function startOwnRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'commune-bench-redis-'));
  execFileSync('redis-server', ['--daemonize', 'yes', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--pidfile', join(dir, 'redis.pid')]);
  const url = `redis://127.0.0.1:${port}`;
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined); // refused while it starts and after shutdown: the calls say so
  await waitFor('own redis', async () => {
    await redis.connect().catch(() => undefined);
    return (await redis.ping()) === 'PONG';
  }, 10_000);
  const pid = Number(/process_id:(\d+)/.exec(await redis.info('server'))[1]);
  return {
    url,
    pid,
    /** Commands Redis has processed since it started. */
    async commandsProcessed() {
      return Number(/total_commands_processed:(\d+)/.exec(await redis.info('stats'))[1]);
    },
    async stop() {
      await redis.call('shutdown', 'nosave').catch(() => undefined);
      redis.disconnect();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Drops the bench's schema and its Redis keys (on a shared Redis). */
export async function dropBenchData({ databaseUrl, schema, redisUrl, prefix }) {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect().then(() => client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch(() => undefined);
  await client.end().catch(() => undefined);
  if (!redisUrl) return;
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } catch {
    // A Redis the bench already stopped holds nothing to drop.
  }
  redis.disconnect();
}

/** One `/metrics` value of a scheduler (the first sample of that name). */
export async function metric(url, name) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line === undefined ? NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
}
