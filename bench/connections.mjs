#!/usr/bin/env node
// `pnpm bench`, connection capacity: how many idle connected workers one scheduler replica holds,
// and what each costs it, next to a bare socket.io server holding the same connections.
//
// What runs: one scheduler (`node apps/scheduler/dist/main.js`, as deployed) on its own PostgreSQL
// schema and on a Redis of the bench's own (so its Redis work can be counted), and
// BENCH_CLIENT_PROCESSES child processes (bench/support/idle-clients.mjs) that open worker
// connections exactly as commune-worker does (socket.io-client, websocket transport, `/worker`, the
// worker's hello as handshake auth), spread over local source addresses 127.0.1.2, 127.0.1.3, ...
// (BENCH_CONNECTIONS_PER_ADDRESS each; one address has ~28,000 ephemeral ports). Then the same for
// the baseline, bench/support/bare-socketio.mjs (the scheduler's socket.io 4.8, same transport
// options, no NestJS, no Redis adapter), from 127.0.2.x.
//
// "Idle" here means connected and registered (the scheduler accepted the hello and counts the worker
// in commune_workers_connected), not asking for work. A real commune-worker with nothing to do is
// not that quiet: after an empty grant it asks again 1 s later (Supervisor pollMs), the wait doubling
// with each empty grant up to a minute (pollMaxMs, apps/worker/src/poll-backoff.ts), so after the
// ramp some connections poll that way ("polling idle") and the bench reports what each request costs.
//
// Figures, per ramp step (BENCH_IDLE_STEPS, up to BENCH_IDLE_WORKERS):
//   connected      connections the server counts (the scheduler's commune_workers_connected gauge)
//   connect/s      new connections per second while the step was opened (handshake included)
//   RSS            the server's VmRSS at the end of the step's idle period (BENCH_IDLE_SECONDS)
//   heap           V8 heap in use then (the scheduler's /metrics; the baseline's process.memoryUsage)
//   KB/conn        (RSS - RSS before any connection) / connected: the marginal memory per connection
//   CPU            the server's CPU (user + system, % of one core) over the idle period: socket.io's
//                  heartbeats (a ping every 25 s per connection) and whatever else runs per connection
//   redis cmd/s    commands the scheduler sent its Redis over the idle period (constant = none per connection)
//   ms CPU each    the server's CPU per new connection while the step was opened (the handshake)
//   hint storm     at each step, one 'work:available' hint while every connection waits for work (each
//                  first asks once and gets an empty grant, as commune-worker does), each hinted one
//                  answering it with one task:request, as the real worker does: to the scheduler through
//                  a one-slice job deployed with the SDK (it hints at most WorkerNotifier.maxHintedPerReplica
//                  waiting workers), to the bare server as one broadcast to all (it answers every request
//                  with an empty grant). Seconds until every request made was answered (or gave up after
//                  30 s), server CPU seconds.
//                  The bench then waits for the server to be quiet (requests whose askers gave up are
//                  still worked through) before it goes on.
// Then BENCH_POLL_CONNECTIONS of the connections poll as an idle commune-worker does (task:request,
// and again 1 s after an empty grant, doubling up to BENCH_POLL_MAX_MS, 60 s, jittered; all start in
// the same second, as after a fleet restart) for BENCH_POLL_SECONDS: requests answered per second, server
// CPU ms per answered request, Redis commands per request (those run inside Lua scripts included),
// latency p50/p99, and how many polling idle workers one core answers at one request a second each.
//
// Limits: each connection is a file descriptor in the server; the open-files limit (RLIMIT_NOFILE)
// caps one process. The bench raises it with `prlimit` where it may; where it may not (no
// CAP_SYS_RESOURCE), the ramp stops at what the limit allows and the bench says so, and projects the
// target from the measured KB per connection (a projection, printed as one).
//
// Environment: BENCH_IDLE_WORKERS (50000), BENCH_IDLE_STEPS (5000,10000,25000,50000),
// BENCH_IDLE_SECONDS (30), BENCH_POLL_SECONDS (20), BENCH_POLL_CONNECTIONS (2000, or `all`: at 19,671
// polling connections on this loaded 2-core machine both servers fell behind, answers came after the
// askers' 10 s timeout and connections dropped, so nothing per request could be read), BENCH_CLIENT_PROCESSES (4),
// BENCH_CONNECTIONS_PER_ADDRESS (10000), BENCH_CONNECT_CONCURRENCY (100 per client process),
// BENCH_SCHEDULER_NODE_OPTIONS (--max-old-space-size=1536: the image's 128 MB old space holds only
// ~4,400 idle connections at ~20 KB of heap each; with it the scheduler fell into back-to-back garbage
// collections, handshakes timed out, then it died "JavaScript heap out of memory", 2026-12-03),
// BENCH_BASELINE (1; 0 skips the bare socket.io server), BENCH_HINT (1; 0 skips the hint storm),
// BENCH_HEAP_SNAPSHOT (0; 1 writes heap snapshots of each server before the first connection and at
// the first step, and prints what the connections added, by constructor; the snapshots inflate RSS,
// so that run's RSS figures do not count), BENCH_CPU_PROFILE (0; 1 profiles each server while the
// first step opens, during the hint storm and while polling, and prints self time by package and the
// top functions), BENCH_DATABASE_URL. Writes bench/results/connections-latest.json.
import { execFileSync, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  cpuSecondsOf, dropBenchData, endChildren, freePort, metric, openFilesLimit, percentile, root, rssOf, sleep, spawnNode, startOwnRedis, track, waitFor,
} from './support/common.mjs';
import { summarizeProfile } from './support/profiles.mjs';
import { init } from '@commune/client';

const target = Number(process.env.BENCH_IDLE_WORKERS ?? 50_000);
const requestedSteps = (process.env.BENCH_IDLE_STEPS ?? '5000,10000,25000,50000').split(',').map(Number).filter((n) => n > 0 && n < target);
const steps = [...new Set([...requestedSteps, target])].sort((a, b) => a - b);
const idleSeconds = Number(process.env.BENCH_IDLE_SECONDS ?? 30);
const pollSeconds = Number(process.env.BENCH_POLL_SECONDS ?? 20);
const perAddress = Number(process.env.BENCH_CONNECTIONS_PER_ADDRESS ?? 10_000);
const concurrency = Number(process.env.BENCH_CONNECT_CONCURRENCY ?? 100);
// Not the image's --max-old-space-size=128: that heap is full at ~4,400 idle connections (see the header).
const schedulerNodeOptions = process.env.BENCH_SCHEDULER_NODE_OPTIONS ?? '--max-old-space-size=1536';
const withBaseline = process.env.BENCH_BASELINE !== '0';
const heapSnapshots = process.env.BENCH_HEAP_SNAPSHOT === '1';
const withHint = process.env.BENCH_HINT !== '0';
const cpuProfiles = process.env.BENCH_CPU_PROFILE === '1';
const pollConnections = process.env.BENCH_POLL_CONNECTIONS === 'all' ? Infinity : Number(process.env.BENCH_POLL_CONNECTIONS ?? 2000);
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/commune_bench';
const tag = `bench_conn_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const pollMs = 1000; // commune-worker's Supervisor defaultTiming.pollMs (the first wait)...
const pollMaxMs = Number(process.env.BENCH_POLL_MAX_MS ?? 60_000); // ...doubling to defaultTiming.pollMaxMs
const pollMaxSlices = 4; // an idle 2-sandbox worker's first request: bufferTarget() = 2 x sandboxes
const mb = (n) => Math.round(n);

/** File descriptors a server needs besides its connections (stdio, epoll, Redis, PostgreSQL, listeners), and a margin. */
const fdReserve = 300;

/**
 * The open-files limit the servers get. Raising the hard limit needs CAP_SYS_RESOURCE: tried with
 * prlimit on a throwaway process first; where it fails the servers keep this process's limit.
 */
function serverFileLimit(wanted) {
  const own = openFilesLimit();
  if (own.hard >= wanted) return { limit: own.hard, prefix: [], raised: false, own };
  try {
    execFileSync('prlimit', [`--nofile=${wanted}:${wanted}`, 'true'], { stdio: 'ignore' });
    return { limit: wanted, prefix: ['prlimit', `--nofile=${wanted}:${wanted}`], raised: true, own };
  } catch {
    return { limit: own.hard, prefix: [], raised: false, own };
  }
}

/** The client processes: each holds a share of the connections. */
function startClients(count) {
  return Array.from({ length: count }, (_, i) => {
    const child = track(fork(join(root, 'bench/support/idle-clients.mjs'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }), `clients-${i}`);
    child.setMaxListeners(0);
    return child;
  });
}
function ask(child, message, type) {
  return new Promise((resolve, reject) => {
    const onMessage = (reply) => {
      if (reply.type === 'error') {
        child.off('message', onMessage);
        reject(new Error(`client process: ${reply.message}`));
      } else if (reply.type === type) {
        child.off('message', onMessage);
        resolve(reply);
      }
    };
    child.on('message', onMessage);
    child.send(message);
  });
}

/** Starts a server process with the file limit, returns {child, url, stats()}. */
async function startServer(kind, files, redis) {
  const port = await freePort();
  const nodeArgs = schedulerNodeOptions.split(' ').filter(Boolean);
  let child;
  let stats;
  const diagnostics = heapSnapshots ? mkdtempSync(join(tmpdir(), 'commune-bench-heap-')) : null;
  if (diagnostics) nodeArgs.push('--heapsnapshot-signal=SIGPWR', `--diagnostic-dir=${diagnostics}`);
  const profiles = cpuProfiles ? mkdtempSync(join(tmpdir(), 'commune-bench-cpu-')) : null;
  if (profiles) nodeArgs.push('--import', pathToFileURL(join(root, 'bench/support/cpu-profile.mjs')).href);
  if (kind === 'scheduler') {
    const args = [...nodeArgs, 'apps/scheduler/dist/main.js'];
    const env = { PORT: String(port), DATABASE_URL: databaseUrl, DATABASE_SCHEMA: tag, REDIS_URL: redis.url, REDIS_PREFIX: tag, LOG_LEVEL: 'warn', NODE_OPTIONS: '', BENCH_CPU_PROFILE_DIR: profiles ?? '' };
    child = files.prefix.length
      ? track(spawn(files.prefix[0], [...files.prefix.slice(1), process.execPath, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] }), kind)
      : spawnNode(args, { env, name: kind });
    const url = `http://127.0.0.1:${port}`;
    await waitFor('scheduler /health', async () => (await fetch(`${url}/health`)).ok, 60_000);
    stats = async () => ({
      connected: await metric(url, 'commune_workers_connected'),
      heapUsedMb: (await metric(url, 'commune_scheduler_nodejs_heap_size_used_bytes')) / 2 ** 20,
    });
    return { child, url, stats, diagnostics, profiles };
  }
  child = track(fork(join(root, 'bench/support/bare-socketio.mjs'), [String(port)], {
    execArgv: nodeArgs, stdio: ['ignore', 'pipe', 'inherit', 'ipc'], env: { ...process.env, BENCH_CPU_PROFILE_DIR: profiles ?? '' },
    ...(files.prefix.length ? { execPath: files.prefix[0], execArgv: [...files.prefix.slice(1), process.execPath, ...nodeArgs] } : {}),
  }), kind);
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (data) => String(data).includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`bare socket.io server exited (${code})`)));
  });
  stats = async () => {
    const reply = await ask(child, { cmd: 'stats' }, 'stats');
    return { connected: reply.connected, heapUsedMb: reply.heapUsedMb };
  };
  return { child, url: `http://127.0.0.1:${port}`, stats, diagnostics, profiles };
}

const openFds = (pid) => readdirSync(`/proc/${pid}/fd`).length;
const alive = (child) => child.exitCode === null && child.signalCode === null;

/** Ramps one server through the steps; then every connection polls for BENCH_POLL_SECONDS. */
async function ramp(kind, files, redis, addressBase) {
  const server = await startServer(kind, files, redis);
  const pid = server.child.pid;
  const holdable = files.limit - openFds(pid) - fdReserve;
  const processCount = Math.max(Number(process.env.BENCH_CLIENT_PROCESSES ?? 4), Math.ceil(Math.min(steps.at(-1), holdable) / (openFilesLimit().hard - fdReserve)));
  const clients = startClients(processCount);
  await sleep(500);
  const base = rssOf(pid);
  const baseHeapMb = (await server.stats()).heapUsedMb;
  const rows = [];
  let opened = 0;
  let limitedBy = null;
  const heap = heapSnapshots ? { before: await snapshot(server) } : null;
  console.log(`${kind}: pid ${pid}, ${base.rssMb.toFixed(0)} MB RSS and ${baseHeapMb.toFixed(0)} MB heap before any connection, ${openFds(pid)} fds open, open-files limit ${files.limit} (room for ${holdable} connections); ${processCount} client processes`);
  for (const wanted of steps) {
    let step = wanted;
    if (step > holdable) {
      limitedBy = `open files: the server's RLIMIT_NOFILE is ${files.limit}${files.raised ? '' : ' and cannot be raised here'}`;
      step = holdable;
      if (step <= opened) break;
    }
    const adding = step - opened;
    const openCpu0 = cpuSecondsOf(pid);
    const started = performance.now();
    const shares = clients.map((_, i) => Math.floor(adding / clients.length) + (i < adding % clients.length ? 1 : 0));
    let first = opened;
    const replies = await profiled(server, kind, rows.length === 0 ? `opening ${adding} connections` : null, () => Promise.all(clients.map((child, i) => {
      const message = { cmd: 'open', url: server.url, first, count: shares[i], addressBase, perAddress, concurrency, sandboxes: 2 };
      first += shares[i];
      return ask(child, message, 'opened');
    })));
    const connectSeconds = (performance.now() - started) / 1000;
    const cpuMsPerConnect = alive(server.child) ? ((cpuSecondsOf(pid) - openCpu0) * 1000) / Math.max(1, adding) : NaN;
    const failed = replies.reduce((n, r) => n + r.failed, 0);
    const errors = {};
    for (const reply of replies) for (const [error, n] of Object.entries(reply.errors)) errors[error] = (errors[error] ?? 0) + n;
    opened = step;
    if (!alive(server.child)) throw new Error(`${kind} exited while ${step} connections were opened`);
    // Idle period: the server holds the connections and does nothing else.
    await waitFor(`${kind} counting its connections`, async () => (await server.stats()).connected >= step - failed, 30_000).catch(() => undefined);
    const cpu0 = cpuSecondsOf(pid);
    const redisCpu0 = redis ? cpuSecondsOf(redis.pid) : 0;
    const commands0 = redis ? await redis.commandsProcessed() : 0;
    const t0 = performance.now();
    let peakRss = 0;
    while (performance.now() - t0 < idleSeconds * 1000 && alive(server.child)) {
      await sleep(1000);
      if (alive(server.child)) peakRss = Math.max(peakRss, rssOf(pid).rssMb);
    }
    if (!alive(server.child)) {
      limitedBy = `${kind} exited during the idle period at ${step} connections (code ${server.child.exitCode}, signal ${server.child.signalCode})`;
      rows.push({ step, connected: 0, failed, errors, died: true });
      break;
    }
    const elapsed = (performance.now() - t0) / 1000;
    const cpuPercent = ((cpuSecondsOf(pid) - cpu0) / elapsed) * 100;
    const redisCpuPercent = redis ? ((cpuSecondsOf(redis.pid) - redisCpu0) / elapsed) * 100 : null;
    const redisCommandsPerSecond = redis ? ((await redis.commandsProcessed()) - commands0) / elapsed : null;
    const { rssMb } = rssOf(pid);
    const stats = await server.stats();
    const clientConnected = (await Promise.all(clients.map((child) => ask(child, { cmd: 'stats' }, 'stats')))).reduce((n, r) => n + r.connected, 0);
    const row = {
      step, connected: stats.connected, clientConnected, failed, errors,
      connectSeconds: Number(connectSeconds.toFixed(1)), connectPerSecond: Math.round((adding - failed) / connectSeconds), cpuMsPerConnect: Number(cpuMsPerConnect.toFixed(2)),
      rssMb: mb(rssMb), peakRssMb: mb(peakRss), heapUsedMb: mb(stats.heapUsedMb),
      kbPerConnection: Number((((rssMb - base.rssMb) * 1024) / Math.max(1, stats.connected)).toFixed(1)),
      heapKbPerConnection: Number((((stats.heapUsedMb - baseHeapMb) * 1024) / Math.max(1, stats.connected)).toFixed(1)),
      cpuPercent: Number(cpuPercent.toFixed(1)),
      redisCommandsPerSecond: redisCommandsPerSecond === null ? null : Math.round(redisCommandsPerSecond),
      redisCpuPercent: redisCpuPercent === null ? null : Number(redisCpuPercent.toFixed(1)),
      loadAverage: Number(loadavg()[0].toFixed(1)),
    };
    rows.push(row);
    console.log(
      `  ${kind} ${String(row.step).padStart(6)}: connected ${row.connected} (clients see ${clientConnected}, ${failed} failed${failed ? ' ' + JSON.stringify(errors) : ''}), ` +
        `${row.connectPerSecond} connect/s (${row.cpuMsPerConnect} ms CPU each), RSS ${row.rssMb} MB (peak ${row.peakRssMb}), heap ${row.heapUsedMb} MB, ${row.kbPerConnection} KB/conn (heap ${row.heapKbPerConnection}), ` +
        `idle CPU ${row.cpuPercent}%${redis ? `, redis ${row.redisCommandsPerSecond} cmd/s (${row.redisCpuPercent}% CPU)` : ''}; load average ${row.loadAverage}`,
    );
    if (heap && !heap.after) {
      heap.after = await snapshot(server);
      heap.connections = stats.connected;
    }
    // One hint while every connection waits for work: each gets 'work:available' and asks once.
    if (withHint) {
      row.storm = await profiled(server, kind, rows.length === 1 ? 'the hint storm' : null, () => hintStorm(server, kind, clients, stats.connected));
      await settle(pid);
    }
    if (failed > adding * 0.01) {
      limitedBy = `${failed} of ${adding} connections failed at step ${step}: ${JSON.stringify(errors)}`;
      break;
    }
  }


  // Polling idle: every connection asks for work as an idle commune-worker does.
  let poll = null;
  if (pollSeconds > 0 && alive(server.child) && rows.length && !rows.at(-1).died) {
    const cpu0 = cpuSecondsOf(pid);
    const redisCpu0 = redis ? cpuSecondsOf(redis.pid) : 0;
    const commands0 = redis ? await redis.commandsProcessed() : 0;
    const t0 = performance.now();
    const polling = Math.min(pollConnections, rows.at(-1).connected);
    await Promise.all(clients.map((child, i) => ask(child, { cmd: 'poll', pollMs, pollMaxMs, maxSlices: pollMaxSlices, count: Math.floor(polling / clients.length) + (i < polling % clients.length ? 1 : 0) }, 'polling')));
    await profiled(server, kind, 'polling', () => sleep(pollSeconds * 1000));
    // Stop asking and wait for the answers in flight: the CPU counted is then that of every answer counted.
    const replies = await Promise.all(clients.map((child) => ask(child, { cmd: 'quiet' }, 'polled')));
    const elapsed = (performance.now() - t0) / 1000;
    const cpuSeconds = cpuSecondsOf(pid) - cpu0;
    const redisCpuSeconds = redis ? cpuSecondsOf(redis.pid) - redisCpu0 : 0;
    const commands = redis ? (await redis.commandsProcessed()) - commands0 : 0;
    const latencies = replies.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const answered = replies.reduce((n, r) => n + r.empty + r.granted, 0);
    const errors = {};
    for (const reply of replies) for (const [error, n] of Object.entries(reply.errors)) errors[error] = (errors[error] ?? 0) + n;
    const msPerRequest = (cpuSeconds * 1000) / Math.max(1, answered);
    poll = {
      connections: rows.at(-1).connected, polling, seconds: Number(elapsed.toFixed(1)), wantedPerSecond: polling,
      answeredPerSecond: Math.round(answered / elapsed), requests: replies.reduce((n, r) => n + r.requests, 0), errors, unanswered: replies.reduce((n, r) => n + r.unanswered, 0),
      cpuPercent: Number(((cpuSeconds / elapsed) * 100).toFixed(1)), cpuMsPerRequest: Number(msPerRequest.toFixed(3)),
      redisCommandsPerRequest: redis ? Number((commands / Math.max(1, answered)).toFixed(2)) : null,
      redisCpuPercent: redis ? Number(((redisCpuSeconds / elapsed) * 100).toFixed(1)) : null,
      latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
      pollingWorkersPerCore: Math.floor(1000 / msPerRequest),
    };
    console.log(
      `  ${kind} polling (${polling} of ${poll.connections} connections, each task:request ${pollMs} ms after an empty grant, doubling to ${pollMaxMs} ms, ${poll.seconds} s): ` +
        `${poll.answeredPerSecond} answered/s of ${poll.wantedPerSecond} wanted, CPU ${poll.cpuPercent}% = ${poll.cpuMsPerRequest} ms per request` +
        `${redis ? `, ${poll.redisCommandsPerRequest} Redis commands per request, those run inside Lua scripts included (redis ${poll.redisCpuPercent}% CPU)` : ''}, ` +
        `latency p50 ${poll.latencyMs.p50} / p99 ${poll.latencyMs.p99} ms${Object.keys(errors).length ? ', errors ' + JSON.stringify(errors) : ''}; ` +
        `one core answers ~${poll.pollingWorkersPerCore} polling idle workers`,
    );
  }

  for (const child of clients) child.send({ cmd: 'close' });
  await endChildren([server.child]); // the server first: the clients' ports do not linger in TIME_WAIT
  await endChildren(clients);
  if (heap) reportHeap(kind, heap, server.diagnostics);
  if (server.profiles) rmSync(server.profiles, { recursive: true, force: true });
  return { kind, baseRssMb: mb(base.rssMb), baseHeapMb: mb(baseHeapMb), limit: files.limit, clientProcesses: processCount, rows, poll, limitedBy };
}

/**
 * Waits until the server is quiet again (under 20% of a core for two seconds in a row, at most
 * 180 s): requests whose askers gave up are still worked through, and must not count in the next figure.
 */
async function settle(pid) {
  const deadline = Date.now() + 180_000;
  let quietSeconds = 0;
  while (quietSeconds < 2 && Date.now() < deadline) {
    const cpu0 = cpuSecondsOf(pid);
    await sleep(1000);
    quietSeconds = cpuSecondsOf(pid) - cpu0 < 0.2 ? quietSeconds + 1 : 0;
  }
}

/** Runs `action` under the server's CPU profiler (BENCH_CPU_PROFILE=1) and prints where its time went. */
async function profiled(server, kind, label, action) {
  if (!server.profiles || label === null) return action();
  const before = readdirSync(server.profiles).length;
  server.child.kill('SIGTTIN');
  await sleep(300);
  const result = await action();
  server.child.kill('SIGTTOU');
  await waitFor('CPU profile', async () => readdirSync(server.profiles).length > before, 60_000);
  await sleep(500);
  const path = join(server.profiles, `${before + 1}.cpuprofile`);
  const { totalMs, parts, functions } = summarizeProfile(path);
  const idle = parts.find(([part]) => part === '(idle)')?.[1] ?? 0;
  const busy = totalMs * 1000 - idle;
  const share = (micros) => `${((micros / busy) * 100).toFixed(1)}%`;
  console.log(`  ${kind} CPU profile of ${label}: ${(busy / 1000).toFixed(0)} ms busy of ${totalMs.toFixed(0)} ms; self time by part: ${parts.filter(([part]) => part !== '(idle)').slice(0, 12).map(([part, micros]) => `${part} ${share(micros)}`).join(', ')}`);
  for (const [name, micros] of functions.filter(([name]) => !name.startsWith('(idle)')).slice(0, 12)) console.log(`      ${share(micros).padStart(6)}  ${name}`);
  return result;
}

/**
 * The cost of one 'work:available' hint: a one-slice job is deployed (through the SDK, as a developer
 * would) while every connection waits for work; the hint reaches all of them (one emit through the
 * Redis adapter) and each asks once, as commune-worker does. Measured: how long until every request
 * was answered, and the scheduler's CPU seconds meanwhile.
 */
async function hintStorm(server, kind, clients, connections) {
  const pid = server.child.pid;
  await Promise.all(clients.map((child) => ask(child, { cmd: 'hint', maxSlices: pollMaxSlices }, 'hinting')));
  const compute = kind === 'scheduler' ? (await init({ scheduler: server.url, home: mkdtempSync(join(tmpdir(), 'commune-bench-')) })).compute : null;
  const cpu0 = cpuSecondsOf(pid);
  const t0 = Date.now();
  const job = compute?.for([1], (x) => x);
  const execution = job ? job.exec().catch(() => null) : ask(server.child, { cmd: 'hint' }, 'hint-sent');
  let cpuSeconds = 0;
  let replies = [];
  const settled = (r) => r.answered + Object.values(r.errors).reduce((n, k) => n + k, 0);
  // The scheduler hints at most WorkerNotifier.maxHintedPerReplica waiting workers per hint (more only
  // while work is left): done when every connection answered, or when every request made was answered
  // and no new one came for a second.
  let lastRequests = -1;
  let stableSince = Date.now();
  await waitFor('every hinted connection answered', async () => {
    await sleep(200);
    replies = await Promise.all(clients.map((child) => ask(child, { cmd: 'hinted' }, 'hinted')));
    cpuSeconds = cpuSecondsOf(pid) - cpu0;
    const requests = replies.reduce((n, r) => n + r.requests, 0);
    const done = replies.reduce((n, r) => n + settled(r), 0);
    if (requests !== lastRequests) {
      lastRequests = requests;
      stableSince = Date.now();
    }
    return done >= connections || (requests > 0 && done >= requests && Date.now() - stableSince >= 1000);
  }, 180_000).catch(() => undefined);
  replies = await Promise.all(clients.map((child) => ask(child, { cmd: 'hinted', final: true }, 'hinted')));
  const answered = replies.reduce((n, r) => n + r.answered, 0);
  const firstHintAt = Math.min(...replies.map((r) => r.firstHintAt || Infinity));
  const lastAnswerAt = Math.max(...replies.map((r) => r.lastAnswerAt));
  const latencies = replies.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const errors = {};
  for (const reply of replies) for (const [error, n] of Object.entries(reply.errors)) errors[error] = (errors[error] ?? 0) + n;
  if (job) await Promise.race([job.cancel().catch(() => undefined), sleep(5000)]);
  void execution;
  const result = {
    connections, requests: replies.reduce((n, r) => n + r.requests, 0), answered, granted: replies.reduce((n, r) => n + r.granted, 0), errors,
    hintAfterDeployMs: Number.isFinite(firstHintAt) ? firstHintAt - t0 : null,
    secondsUntilAllAnswered: Number(((lastAnswerAt - t0) / 1000).toFixed(1)),
    schedulerCpuSeconds: Number(cpuSeconds.toFixed(1)),
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
  };
  console.log(
    `      hint storm: ${job ? 'one deploy' : 'one broadcast'} -> work:available to ${result.requests} of ${connections} waiting connections (first after ${result.hintAfterDeployMs} ms) -> ${result.requests} task:requests, ` +
      `${answered} answered (${result.granted} granted) within ${result.secondsUntilAllAnswered} s, ${result.schedulerCpuSeconds} s of server CPU; ` +
      `latency p50 ${result.latencyMs.p50} / p99 ${result.latencyMs.p99} ms${Object.keys(errors).length ? ', errors ' + JSON.stringify(errors) : ''}`,
  );
  return result;
}

/** Writes a heap snapshot of the scheduler (--heapsnapshot-signal; not SIGUSR2, which NestJS's shutdown hooks take) and returns its path once complete. */
async function snapshot(server) {
  const before = new Set(readdirSync(server.diagnostics));
  server.child.kill('SIGPWR');
  let path = null;
  let size = -1;
  await waitFor('heap snapshot', async () => {
    const file = readdirSync(server.diagnostics).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (!file) return false;
    path = join(server.diagnostics, file);
    const now = statSync(path).size;
    const done = now === size && now > 0;
    size = now;
    if (!done) await sleep(1000);
    return done;
  }, 300_000);
  return path;
}

/** Self size and count by constructor (node name) of one V8 heap snapshot, read as a stream of its nodes array. */
function heapByConstructor(path) {
  const data = JSON.parse(readFileSync(path, 'utf8'));
  const fields = data.snapshot.meta.node_fields;
  const types = data.snapshot.meta.node_types[0];
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const totals = new Map();
  for (let i = 0; i < data.nodes.length; i += fields.length) {
    const type = types[data.nodes[i + typeAt]];
    const name = type === 'object' || type === 'closure' || type === 'native' ? `${data.strings[data.nodes[i + nameAt]]} (${type})` : `(${type})`;
    const entry = totals.get(name) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += data.nodes[i + sizeAt];
    totals.set(name, entry);
  }
  return totals;
}

function reportHeap(kind, heap, dir) {
  const before = heapByConstructor(heap.before);
  const after = heapByConstructor(heap.after);
  const diff = [...after].map(([name, a]) => {
    const b = before.get(name) ?? { count: 0, bytes: 0 };
    return { name, count: a.count - b.count, bytes: a.bytes - b.bytes };
  }).sort((x, y) => y.bytes - x.bytes);
  const total = diff.reduce((n, d) => n + d.bytes, 0);
  console.log(`  ${kind} heap snapshots (they inflate RSS: the RSS figures of this run do not count): ${heap.connections} connections added ${(total / 2 ** 20).toFixed(1)} MB of live objects = ${(total / heap.connections / 1024).toFixed(2)} KB per connection; largest by constructor (per connection: objects, bytes):`);
  for (const d of diff.slice(0, 25)) console.log(`    ${d.name.padEnd(48)} ${(d.count / heap.connections).toFixed(1).padStart(6)}  ${(d.bytes / heap.connections).toFixed(0).padStart(6)} B`);
  rmSync(dir, { recursive: true, force: true });
}

async function main() {
  const files = serverFileLimit(steps.at(-1) + 2 * fdReserve);
  console.log(
    `commune connection bench (${tag}): steps ${steps.join(', ')}; idle ${idleSeconds} s per step; scheduler ${schedulerNodeOptions || '(no node options)'}; ` +
      `this process's open-files limit ${files.own.soft}/${files.own.hard}${files.raised ? `, raised to ${files.limit} for the servers` : ' (cannot be raised: no CAP_SYS_RESOURCE)'}; ` +
      `fs.file-max ${readFileSync('/proc/sys/fs/file-max', 'utf8').trim()}; ephemeral ports ${readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().replace(/\s+/, '-')} per source address`,
  );
  const redis = await startOwnRedis();
  ownRedis = redis;
  const results = { date: new Date().toISOString(), tag, target, steps, idleSeconds, pollSeconds, schedulerNodeOptions, openFilesLimit: files.limit, servers: [] };
  try {
    results.servers.push(await ramp('scheduler', files, redis, '127.0.1'));
    if (withBaseline) results.servers.push(await ramp('bare socket.io', files, null, '127.0.2'));
  } finally {
    await endChildren();
    await dropBenchData({ databaseUrl, schema: tag });
    await redis.stop();
  }

  const [scheduler, bare] = results.servers;
  const top = scheduler.rows.filter((r) => !r.died).at(-1);
  const bareTop = bare?.rows.filter((r) => !r.died).at(-1);
  console.log('');
  if (scheduler.limitedBy) console.log(`scheduler ramp stopped: ${scheduler.limitedBy}`);
  if (bareTop) {
    const ratio = top.kbPerConnection / bareTop.kbPerConnection;
    results.ratio = Number(ratio.toFixed(2));
    console.log(`per connection: scheduler ${top.kbPerConnection} KB, bare socket.io ${bareTop.kbPerConnection} KB (at ${bareTop.connected}) = ${ratio.toFixed(2)}x`);
  }
  const topStorm = top?.storm;
  if (topStorm) {
    const perConnection = (storm) => ((storm.schedulerCpuSeconds * 1000) / storm.connections).toFixed(2);
    console.log(
      `one work:available hint to ${topStorm.connections.toLocaleString('en-US')} idle workers: the scheduler spent ${topStorm.schedulerCpuSeconds} s of CPU (${perConnection(topStorm)} ms per worker) ` +
        `and answered ${topStorm.answered} of ${topStorm.requests} requests within ${topStorm.secondsUntilAllAnswered} s` +
        (bareTop?.storm ? `; the bare server ${bareTop.storm.schedulerCpuSeconds} s (${perConnection(bareTop.storm)} ms), ${bareTop.storm.answered} answered within ${bareTop.storm.secondsUntilAllAnswered} s` : ''),
    );
  }
  if (scheduler.poll) {
    console.log(
      `an idle worker's empty task:request: ${scheduler.poll.cpuMsPerRequest} ms of scheduler CPU` +
        (bare?.poll ? `, ${bare.poll.cpuMsPerRequest} ms in the bare server (${(scheduler.poll.cpuMsPerRequest / bare.poll.cpuMsPerRequest).toFixed(2)}x)` : '') +
        `; at one request a second each, one core answers ~${scheduler.poll.pollingWorkersPerCore.toLocaleString('en-US')} polling idle workers` +
        // Backed off, a worker waits [half, all] of pollMaxMs between requests: 0.75 x pollMaxMs on average.
        `; backed off to one request per ~${((0.75 * pollMaxMs) / 1000).toFixed(0)} s, 50,000 idle workers cost ~${((50_000 / (0.75 * pollMaxMs / 1000)) * scheduler.poll.cpuMsPerRequest / 10).toFixed(0)}% of one core`,
    );
  }
  if (top) {
    results.heldAtTop = { connections: top.connected, rssMb: top.rssMb };
    console.log(`idle workers per replica: ${top.connected.toLocaleString('en-US')} at ${top.rssMb} MB RSS (target 50,000 at <= 2048 MB)`);
    // What the image's heap flag allows: V8 stops a process whose old space cannot hold its live objects.
    if (top.heapKbPerConnection > 0) {
      const at128 = Math.floor(((128 - scheduler.baseHeapMb) * 1024) / top.heapKbPerConnection);
      results.connectionsIn128MbHeap = at128;
      console.log(`heap: ${top.heapKbPerConnection} KB per connection over ${scheduler.baseHeapMb} MB at start; the image's --max-old-space-size=128 is full at about ${at128.toLocaleString('en-US')} connections`);
    }
    if (top.connected < 50_000) {
      const projected = scheduler.baseRssMb + (top.kbPerConnection * 50_000) / 1024;
      results.projected50k = { rssMb: mb(projected), from: `${top.kbPerConnection} KB per connection measured at ${top.connected}` };
      console.log(`projected, not measured: 50,000 at ~${mb(projected)} MB RSS (${scheduler.baseRssMb} MB + 50,000 x ${top.kbPerConnection} KB, the slope measured at ${top.connected})`);
    }
  }
  mkdirSync(join(root, 'bench/results'), { recursive: true });
  writeFileSync(join(root, 'bench/results/connections-latest.json'), JSON.stringify(results, null, 2) + '\n');
}

let ownRedis = null;
let ending = false;
const abort = async (signal) => {
  if (ending) return;
  ending = true;
  console.error(`${signal}: stopping`);
  await endChildren();
  await dropBenchData({ databaseUrl, schema: tag });
  await ownRedis?.stop();
  process.exit(130);
};
process.on('SIGINT', abort);
process.on('SIGTERM', abort);

main().then(
  () => process.exit(0),
  async (error) => {
    console.error(`bench failed: ${error.stack ?? error}`);
    await endChildren();
    process.exit(1);
  },
);
