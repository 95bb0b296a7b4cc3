#!/usr/bin/env node
// `pnpm bench`, replica scaling: the dispatch rate of one scheduler replica next to two.
//
// The figure is bench/run.mjs's figure 2: slices/s of a BENCH_SLICES-slice (100,000) trivial job,
// `progress(1); return i * 2`, from deploy to the last result in the SDK, after a 1,000-slice
// warm-up job (work function cached on the workers, sandboxes compiled). Measured
//   one replica    one scheduler; all BENCH_WORKERS workers and the SDK client connect to it;
//   two replicas   two schedulers on the same PostgreSQL schema and Redis prefix; the workers are
//                  split between them (worker i to replica i mod 2), the client on the first, so
//                  half the results reach the client through the socket.io Redis adapter.
// Same workers (BENCH_WORKERS, default 2) with the same sandboxes (BENCH_SANDBOXES each, default 1)
// in both, every process started afresh for each round, rounds alternated BENCH_ROUNDS times
// (default 3) so that a change in the machine's load falls on both. Each round also reports the CPU
// seconds each kind of process used during the measured job (PostgreSQL: every postgres process on
// the machine, so true only when nothing else uses it): on this 2-core machine the schedulers,
// the workers' sandboxes, Redis, PostgreSQL and the client all share two cores, so a second replica
// adds no cores, only a second process competing for them; the ratio shows what running two
// replicas costs or saves on the same hardware, not how the rate scales with a replica's own cores.
//
// PostgreSQL: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/commune_bench), own
// schema, dropped afterwards. Redis: one of the bench's own on a free port, stopped afterwards.
// Schedulers run with BENCH_SCHEDULER_NODE_OPTIONS (default --max-old-space-size=128, as pnpm start
// and the image had it until 2026-12-03, kept so figures compare; they now use 1536 for 50,000 worker
// connections, which a dispatch run with a few workers never comes near). Writes bench/results/replicas-latest.json.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { init } from '@commune/client';
import { cpuSecondsOf, dropBenchData, endChildren, freePort, metric, root, spawnNode, startOwnRedis, waitFor } from './support/common.mjs';

const slices = Number(process.env.BENCH_SLICES ?? 100_000);
const workerCount = Number(process.env.BENCH_WORKERS ?? 2);
const sandboxes = Number(process.env.BENCH_SANDBOXES ?? 1);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const schedulerNodeOptions = process.env.BENCH_SCHEDULER_NODE_OPTIONS ?? '--max-old-space-size=128';
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/commune_bench';
const tag = `bench_repl_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
let redis = null;

/**
 * Every PostgreSQL process on the machine (the bench's connections are served by backends it did
 * not start; other users' backends count too, so this reads true only on an otherwise quiet machine).
 */
function postgresPids() {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim().startsWith('postgres');
    } catch {
      return false;
    }
  }).map(Number);
}

async function startReplica() {
  const port = await freePort();
  const child = spawnNode(['apps/scheduler/dist/main.js'], {
    env: { PORT: String(port), DATABASE_URL: databaseUrl, DATABASE_SCHEMA: tag, REDIS_URL: redis.url, REDIS_PREFIX: tag, LOG_LEVEL: 'warn', NODE_OPTIONS: schedulerNodeOptions },
    name: 'scheduler',
  });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`scheduler ${url} /health`, async () => (await fetch(`${url}/health`)).ok, 60_000);
  return { child, url };
}

/** One round: start `replicaCount` schedulers and the workers, warm up, time the job, stop everything. */
async function round(replicaCount) {
  const replicas = [];
  for (let i = 0; i < replicaCount; i++) replicas.push(await startReplica()); // one at a time: both migrate the same schema
  const workers = Array.from({ length: workerCount }, (_, i) =>
    spawnNode(['apps/worker/dist/cli.js', '--scheduler', replicas[i % replicaCount].url, '--sandboxes', String(sandboxes), '--quiet'], { name: 'worker' }),
  );
  try {
    for (const [i, replica] of replicas.entries()) {
      const expected = workers.filter((_, w) => w % replicaCount === i).length;
      await waitFor(`${expected} workers on ${replica.url}`, async () => (await metric(replica.url, 'commune_workers_connected')) === expected);
    }
    const { compute } = await init({ scheduler: replicas[0].url, home: mkdtempSync(join(tmpdir(), 'commune-bench-')) });
    await compute.for(0, 999, (i) => progress(1) && i * 2).exec();

    const processes = [
      ...replicas.map((r) => ['schedulers', r.child.pid]), ...workers.map((w) => ['workers', w.pid]), ['redis', redis.pid], ['client', process.pid],
      ...postgresPids().map((pid) => ['postgres', pid]),
    ];
    const cpuOf = (pid) => {
      try {
        return cpuSecondsOf(pid);
      } catch {
        return NaN; // a PostgreSQL backend that ended meanwhile
      }
    };
    const cpu0 = processes.map(([, pid]) => cpuOf(pid));
    const load0 = loadavg()[0];
    const started = performance.now();
    const results = await compute.for(0, slices - 1, (i) => progress(1) && i * 2).exec();
    const seconds = (performance.now() - started) / 1000;
    if (results.length !== slices || results[slices - 1] !== (slices - 1) * 2) throw new Error('throughput job returned wrong results');
    const cpu = {};
    processes.forEach(([kind, pid], i) => {
      const used = cpuOf(pid) - cpu0[i];
      if (Number.isFinite(used)) cpu[kind] = (cpu[kind] ?? 0) + used;
    });
    const busy = Object.values(cpu).reduce((n, v) => n + v, 0);
    for (const kind of Object.keys(cpu)) cpu[kind] = Number(cpu[kind].toFixed(2));
    const row = { replicas: replicaCount, slicesPerSecond: Math.round(slices / seconds), seconds: Number(seconds.toFixed(2)), cpuSeconds: cpu, loadAverage: [Number(load0.toFixed(1)), Number(loadavg()[0].toFixed(1))] };
    console.log(
      `  ${replicaCount} replica${replicaCount > 1 ? 's' : ''}: ${slices} slices in ${row.seconds} s = ${row.slicesPerSecond} slices/s; CPU seconds during the job: ` +
        `${Object.entries(cpu).map(([k, v]) => `${k} ${v}`).join(', ')} = ${busy.toFixed(1)} of the ${(2 * seconds).toFixed(1)} the 2 cores had; load average ${row.loadAverage.join(' -> ')}`,
    );
    return row;
  } finally {
    await endChildren([...workers]);
    await endChildren(replicas.map((r) => r.child));
  }
}

async function main() {
  console.log(`commune replica bench (${tag}): ${workerCount} worker(s) x ${sandboxes} sandbox(es), ${slices} slices, ${rounds} rounds of one then two replicas; schedulers ${schedulerNodeOptions}`);
  redis = await startOwnRedis();
  const rows = [];
  try {
    for (let r = 0; r < rounds; r++) {
      rows.push(await round(1));
      rows.push(await round(2));
    }
  } finally {
    await endChildren();
    await dropBenchData({ databaseUrl, schema: tag });
    await redis.stop();
  }
  const median = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)];
  };
  const one = median(rows.filter((r) => r.replicas === 1).map((r) => r.slicesPerSecond));
  const two = median(rows.filter((r) => r.replicas === 2).map((r) => r.slicesPerSecond));
  console.log('');
  console.log(`dispatch rate, median of ${rounds}: one replica ${one} slices/s, two replicas ${two} slices/s = ${(two / one).toFixed(2)}x (${workerCount} workers x ${sandboxes} sandboxes, 2 cores for everything)`);
  const figures = { date: new Date().toISOString(), tag, slices, workers: workerCount, sandboxes, rounds, schedulerNodeOptions, oneReplica: one, twoReplicas: two, ratio: Number((two / one).toFixed(2)), rows };
  mkdirSync(join(root, 'bench/results'), { recursive: true });
  writeFileSync(join(root, 'bench/results/replicas-latest.json'), JSON.stringify(figures, null, 2) + '\n');
}

let ending = false;
const abort = async (signal) => {
  if (ending) return;
  ending = true;
  console.error(`${signal}: stopping`);
  await endChildren();
  await dropBenchData({ databaseUrl, schema: tag });
  await redis?.stop();
  process.exit(130);
};
process.on('SIGINT', abort);
process.on('SIGTERM', abort);

main().then(
  () => process.exit(0),
  async (error) => {
    console.error(`bench failed: ${error.stack ?? error}`); // main() has already stopped and dropped what it started
    process.exit(1);
  },
);
