#!/usr/bin/env node
// `pnpm bench`: end-to-end figures of a private Distributed Computer on this machine, each next
// to a baseline measured in the same run (never a timed test assertion).
//   1. BullMQ no-op jobs/s on the same Redis (concurrency 50): the baseline.
//   2. Throughput of a 100,000-slice trivial job (progress(1); return i * 2), slices/s.
//   3. Deploy -> result latency of one-slice jobs with warm workers, p50/p99.
//   4. Scheduler peak RSS while it dispatches a 10^9-slice range job (BENCH_BIG_SECONDS, default 60).
// Environment: BENCH_SLICES (100000), BENCH_LATENCY_JOBS (200), BENCH_BIG_SECONDS (60), BENCH_WORKERS (1), BENCH_SANDBOXES (2).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import pg from 'pg';
import { Redis } from 'ioredis';
import { init } from '@commune/client';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const slices = Number(process.env.BENCH_SLICES ?? 100_000);
const latencyJobs = Number(process.env.BENCH_LATENCY_JOBS ?? 200);
const bigSeconds = Number(process.env.BENCH_BIG_SECONDS ?? 60);
const workerCount = Number(process.env.BENCH_WORKERS ?? 1);
const sandboxes = Number(process.env.BENCH_SANDBOXES ?? 2);
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/commune_bench';
const tag = `bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const port = 4000 + 900 + Math.floor(Math.random() * 90);
const children = [];

function spawnNode(args, env = {}) {
  const child = spawn(process.execPath, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(child);
  return child;
}
async function waitFor(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
const rssOf = (pid) => {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(/\s(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(name + ':')))[1]) / 1024;
  return { rssMb: field('VmRSS'), peakMb: field('VmHWM') };
};
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

async function bullmqBaseline(jobs = 20_000) {
  const prefix = `${tag}:bullmq`;
  const connection = { url: redisUrl, maxRetriesPerRequest: null };
  const queue = new Queue('noop', { connection, prefix });
  for (let i = 0; i < jobs; i += 1000) await queue.addBulk(Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => ({ name: 'noop', data: { i: i + k } })));
  let done = 0;
  const started = performance.now();
  const finished = new Promise((resolve) => {
    const worker = new Worker('noop', async () => null, { connection, prefix, concurrency: 50, removeOnComplete: { count: 0 } });
    worker.on('completed', () => {
      if (++done === jobs) resolve(worker);
    });
  });
  const worker = await finished;
  const seconds = (performance.now() - started) / 1000;
  await worker.close();
  await queue.obliterate({ force: true });
  await queue.close();
  return jobs / seconds;
}

async function main() {
  console.log(`commune bench (${tag}): ${workerCount} worker(s) x ${sandboxes} sandbox(es), ${slices} slices`);
  const bullmqRate = await bullmqBaseline();
  console.log(`BullMQ no-op baseline: ${bullmqRate.toFixed(0)} jobs/s`);

  const scheduler = spawnNode(['apps/scheduler/dist/main.js'], {
    PORT: String(port), DATABASE_URL: databaseUrl, DATABASE_SCHEMA: tag, REDIS_PREFIX: tag, LOG_LEVEL: 'warn', NODE_OPTIONS: process.env.BENCH_SCHEDULER_NODE_OPTIONS ?? '--max-old-space-size=128', // as pnpm start and the image had it until 2026-12-03 (now 1536, for 50,000 worker connections): kept so figures compare
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor('scheduler /health', async () => (await fetch(`${url}/health`)).ok, 60_000);
  for (let i = 0; i < workerCount; i++) spawnNode(['apps/worker/dist/cli.js', '--scheduler', url, '--sandboxes', String(sandboxes), '--quiet']);
  await waitFor('workers', async () => (await (await fetch(`${url}/metrics`)).text()).includes(`commune_workers_connected ${workerCount}`));
  const { compute } = await init({ scheduler: url, home: mkdtempSync(join(tmpdir(), 'commune-bench-')) });

  // Warm-up: work function cached on the workers, sandboxes compiled.
  await compute.for(0, 999, (i) => progress(1) && i * 2).exec();

  const started = performance.now();
  const results = await compute.for(0, slices - 1, (i) => progress(1) && i * 2).exec();
  const throughputSeconds = (performance.now() - started) / 1000;
  if (results.length !== slices || results[slices - 1] !== (slices - 1) * 2) throw new Error('throughput job returned wrong results');
  const slicesPerSecond = slices / throughputSeconds;
  console.log(`throughput: ${slices} slices in ${throughputSeconds.toFixed(2)} s = ${slicesPerSecond.toFixed(0)} slices/s (${(slicesPerSecond / bullmqRate).toFixed(2)}x BullMQ no-op)`);

  const latencies = [];
  for (let i = 0; i < latencyJobs; i++) {
    const job = compute.for([i], (x) => progress(1) && x);
    const t0 = performance.now();
    const firstResult = new Promise((resolve) => job.once('result', () => resolve(performance.now() - t0)));
    await job.exec();
    latencies.push(await firstResult);
  }
  latencies.sort((a, b) => a - b);
  const p50 = percentile(latencies, 50);
  const p99 = percentile(latencies, 99);
  console.log(`one-slice deploy->result latency over ${latencyJobs} jobs: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms`);

  const big = compute.for(0, 1e9 - 1, (i) => progress(1) && i);
  let bigResults = 0;
  big.on('result', () => bigResults++);
  const bigExecution = big.exec().catch(() => null);
  const before = rssOf(scheduler.pid);
  let peakSample = before.rssMb;
  const bigStarted = Date.now();
  while (Date.now() - bigStarted < bigSeconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    peakSample = Math.max(peakSample, rssOf(scheduler.pid).rssMb);
  }
  const after = rssOf(scheduler.pid);
  await big.cancel();
  await bigExecution;
  console.log(`10^9-slice job for ${bigSeconds} s: ${bigResults} slices computed; scheduler RSS ${before.rssMb.toFixed(0)} -> ${after.rssMb.toFixed(0)} MB, peak ${Math.max(peakSample, after.peakMb).toFixed(0)} MB (VmHWM)`);

  const figures = {
    date: new Date().toISOString(), tag, workers: workerCount, sandboxes,
    bullmqNoopJobsPerSecond: Math.round(bullmqRate),
    throughput: { slices, seconds: Number(throughputSeconds.toFixed(2)), slicesPerSecond: Math.round(slicesPerSecond), ratioToBullmq: Number((slicesPerSecond / bullmqRate).toFixed(2)) },
    latencyMs: { jobs: latencyJobs, p50: Number(p50.toFixed(1)), p99: Number(p99.toFixed(1)) },
    bigJob: { seconds: bigSeconds, slicesComputed: bigResults, schedulerRssMb: Math.round(after.rssMb), schedulerPeakRssMb: Math.round(Math.max(peakSample, after.peakMb)) },
  };
  mkdirSync(join(root, 'bench/results'), { recursive: true });
  writeFileSync(join(root, 'bench/results/latest.json'), JSON.stringify(figures, null, 2) + '\n');
  console.log(JSON.stringify(figures));
}

async function cleanup() {
  for (const child of children) child.kill('SIGINT');
  await new Promise((resolve) => setTimeout(resolve, 1500));
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect().then(() => client.query(`DROP SCHEMA IF EXISTS "${tag}" CASCADE`)).catch(() => undefined);
  await client.end().catch(() => undefined);
  const redis = new Redis(redisUrl);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${tag}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}

main()
  .then(cleanup, async (error) => {
    console.error(`bench failed: ${error.stack ?? error}`);
    await cleanup();
    process.exit(1);
  })
  .then(() => process.exit(0));
