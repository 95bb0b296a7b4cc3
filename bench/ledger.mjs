#!/usr/bin/env node
// Ledger throughput of the bank (apps/bank), started in-process on its own Postgres schema and
// Redis prefix (dropped afterwards). Not a test: figures only, printed as a table and as JSON
// (also written to bench/results/ledger-latest.json). Build first: `pnpm build`.
//   single      one writer, sequential transfers (each its own transaction and commit)
//   batched     payments out of one hold in batches of BENCH_BATCH (default 500), to 1,000 workers
//   concurrent  BENCH_WRITERS (default 32) writers, transfers between random pairs of 64 accounts
//   contended   the same writers over only 4 accounts (every transfer waits on a row lock)
//   http        signed POST /transfers over HTTP from BENCH_WRITERS clients to a bank in its own process
//               (`node apps/bank/dist/main.js` on the same schema, as deployed; signature check included).
//               The transfers are signed before the clock starts (libsecp256k1 through the protocol's
//               signRequest) and posted over one keep-alive HTTP/1.1 connection per client (a minimal client,
//               one request in flight per connection), so the bench's own work stays small next to the bank's
// Same-run baseline of the http figure: ethers' JS signature recovery on one core (recoveries/s),
// what capped the bank's signed transfers before recovery went native (213/s measured 2026-11-30).
// Environment: BENCH_SECONDS per scenario (default 5), BENCH_WRITERS, BENCH_BATCH, BENCH_SCENARIOS
// (comma-separated, default all), BENCH_BANK_NODE_ARGS (node arguments of the http scenario's bank),
// BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/commune_bench), REDIS_URL.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getAddress, getBytes, hashMessage, recoverAddress, Wallet } from 'ethers';
import { Redis } from 'ioredis';
import pg from 'pg';
import secp256k1 from 'secp256k1';
import { SignedKind, signedText, signRequest } from '@commune/protocol';
import { LedgerService, PrismaService, startBank } from '@commune/bank';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const writers = Number(process.env.BENCH_WRITERS ?? 32);
const batchSize = Number(process.env.BENCH_BATCH ?? 500);
const scenarios = new Set((process.env.BENCH_SCENARIOS ?? 'single,batched,concurrent,contended,http').split(','));
const databaseUrl = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/commune_bench';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const tag = `bench_ledger_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
const DCC = 10n ** 18n;

const address = () => Wallet.createRandom().address;
let keyCounter = 0;
const key = (prefix) => `${prefix}-${tag}-${keyCounter++}`;
const percentile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : 0);

/** Runs `work` from `concurrency` loops until `seconds` pass; each call returns how many operations it did. */
async function measure(name, unit, concurrency, work) {
  const deadline = performance.now() + seconds * 1000;
  const latencies = [];
  let operations = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, writer) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const t0 = performance.now();
        const done = await work(writer, i); // (not `operations += await ...`: that reads before it waits)
        operations += done;
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    scenario: name,
    unit,
    writers: concurrency,
    operations,
    seconds: Number(elapsed.toFixed(2)),
    perSecond: Math.round(operations / elapsed),
    callP50Ms: Number(percentile(latencies, 50).toFixed(2)),
    callP99Ms: Number(percentile(latencies, 99).toFixed(2)),
  };
}

/** A MessageSigner (what signRequest takes) signing with libsecp256k1: same signatures as ethers' Wallet (RFC 6979). */
function nativeSigner(wallet) {
  const key = getBytes(wallet.privateKey);
  return {
    address: wallet.address,
    async signMessage(message) {
      const { signature, recid } = secp256k1.ecdsaSign(getBytes(hashMessage(message)), key);
      return '0x' + Buffer.from(signature).toString('hex') + (27 + recid).toString(16);
    },
  };
}

/** The bank as its own process (as `pnpm start` and the image run it), on the bench's schema. */
async function spawnBankProcess(env, nodeArgs = []) {
  const child = spawn(process.execPath, [...nodeArgs, join(root, 'apps/bank/dist/main.js')], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output = (output + chunk).slice(-20_000)));
  child.stderr.on('data', (chunk) => (output = (output + chunk).slice(-20_000)));
  const deadline = Date.now() + 30_000;
  while (!output.includes('bank listening on')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the bank process did not start: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    /** CPU seconds the bank process has used so far, in user mode and in the kernel (its system calls). */
    cpu() {
      const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1].split(' ');
      return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }; // utime, stime in clock ticks (100/s)
    },
    async stop() {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** A TCP port free on loopback right now. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** CPU seconds used so far by every process named postgres (the server's other clients count too) (the server and its backends). */
function postgresCpuSeconds() {
  let total = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(postgres)')) continue;
      const fields = stat.split(') ')[1].split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** The machine's CPU time so far (all cores, seconds): busy and idle, from /proc/stat. */
function machineCpu() {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  return { busy: (user + nice + system + irq + softirq + steal) / 100, idle: (idle + iowait) / 100 };
}

/**
 * One HTTP/1.1 keep-alive connection per client, one request in flight on it (no pipelining):
 * each POST is written in one piece, its reply read by Content-Length. A real client sits on
 * another machine; here the clients share the bank's two cores, so they are kept small: against
 * a trivial local server, node:http's keep-alive ClientRequest took ~0.075 ms of client CPU per
 * request and this ~0.025 ms (measured 2026-12-03). A reply without Content-Length, or a
 * connection that breaks while a request waits, fails the bench.
 */
function httpClient(port, host = '127.0.0.1') {
  let socket = null;
  let buffered = Buffer.alloc(0);
  let waiting = null; // { resolve, reject } of the request in flight
  const fail = (error) => {
    const current = waiting;
    waiting = null;
    socket?.destroy();
    socket = null;
    current?.reject(error);
  };
  const onData = (chunk) => {
    buffered = buffered.length ? Buffer.concat([buffered, chunk]) : chunk;
    const headerEnd = buffered.indexOf('\r\n\r\n');
    if (headerEnd < 0 || !waiting) return;
    const head = buffered.toString('latin1', 0, headerEnd);
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1];
    if (!status || length === undefined) return fail(new Error(`unexpected HTTP reply: ${JSON.stringify(head.slice(0, 200))}`));
    const end = headerEnd + 4 + Number(length);
    if (buffered.length < end) return;
    const text = buffered.toString('utf8', headerEnd + 4, end);
    buffered = buffered.subarray(end);
    const current = waiting;
    waiting = null;
    if (/\r\nconnection:\s*close/i.test(head)) {
      socket.destroy();
      socket = null;
    }
    current.resolve({ status, text });
  };
  const connect = () =>
    new Promise((resolve, reject) => {
      const next = net.connect(port, host, () => {
        next.off('error', reject);
        next.setNoDelay(true);
        next.on('data', onData);
        next.on('error', (error) => fail(error));
        next.on('close', () => {
          if (socket === next) socket = null;
          if (waiting) fail(new Error('the bank closed the connection while a request waited'));
        });
        resolve(next);
      });
      next.once('error', reject);
    });
  return async (path, body) => {
    if (waiting) throw new Error('one request at a time per connection');
    if (!socket) {
      socket = await connect();
      buffered = Buffer.alloc(0);
    }
    return new Promise((resolve, reject) => {
      waiting = { resolve, reject };
      socket.write(`POST ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    });
  };
}

/** ethers' JS recovery of signed requests on this core for `ms`: the old path's cap. */
async function ethersRecoveryRate(ms = 2000) {
  const wallet = Wallet.createRandom();
  const transfer = { from: wallet.address, to: wallet.address, amount: '1', idempotencyKey: 'baseline-key', expiresAt: Date.now() };
  const signature = await signRequest(wallet, SignedKind.transfer, transfer);
  const deadline = performance.now() + ms;
  let count = 0;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  while (performance.now() < deadline) {
    if (getAddress(recoverAddress(hashMessage(signedText(SignedKind.transfer, transfer)), signature)) !== wallet.address) throw new Error('baseline recovery failed');
    count++;
  }
  const cpu = process.cpuUsage(cpuBefore);
  // Wall-clock rate (what a busy machine lends this thread) and CPU per recovery (what it costs when it runs).
  return { perSecond: Math.round(count / ((performance.now() - started) / 1000)), cpuMsPerRecovery: Number(((cpu.user + cpu.system) / 1000 / count).toFixed(3)) };
}

async function main() {
  const bank = await startBank({
    DATABASE_URL: databaseUrl,
    DATABASE_SCHEMA: tag,
    DATABASE_POOL_SIZE: String(writers + 8),
    REDIS_URL: redisUrl,
    REDIS_PREFIX: tag,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    BANK_SERVICE_TOKEN: 'bench-service-token-0123456789abcdef',
  });
  const ledger = bank.app.get(LedgerService);
  const results = [];
  try {
    const fund = async (to, amount) => ledger.mint({ idempotencyKey: key('fund'), to, amount: amount.toString(), memo: 'bench' });

    // single: one writer, one account to another and back.
    const [a, b] = [address(), address()];
    await fund(a, 10n ** 30n);
    if (scenarios.has('single')) results.push(
      await measure('single', 'transfers', 1, async (_writer, i) => {
        await ledger.transfer({ idempotencyKey: key('single'), from: i % 2 ? b : a, to: i % 2 ? a : b, amount: i % 2 ? '1' : '2' });
        return 1;
      }),
    );

    // batched: payments out of one hold, batches of `batchSize`, to 1,000 workers.
    const payer = address();
    const workers = Array.from({ length: 1000 }, address);
    await fund(payer, 10n ** 30n);
    const hold = (await ledger.createHold({ idempotencyKey: key('hold'), account: payer, amount: (10n ** 29n).toString(), reference: 'j_benchmark000000', expiresAt: Date.now() + 3600_000 })).value;
    let slice = 0;
    if (scenarios.has('batched')) results.push(
      await measure('batched', 'payments', 1, async () => {
        const payments = Array.from({ length: batchSize }, () => ({ key: `j_benchmark:${slice}`, to: workers[slice++ % workers.length], amount: DCC.toString() }));
        const reply = await ledger.postPayments(hold.holdId, { idempotencyKey: key('batch'), payments, feePerPayment: '1000' });
        return reply.paid;
      }),
    );

    // concurrent: writers moving money between random pairs of 64 funded accounts.
    const spread = Array.from({ length: 64 }, address);
    for (const account of spread) await fund(account, 10n ** 24n);
    if (scenarios.has('concurrent')) results.push(
      await measure('concurrent', 'transfers', writers, async () => {
        const from = spread[Math.floor(Math.random() * spread.length)];
        let to = spread[Math.floor(Math.random() * spread.length)];
        if (to === from) to = spread[(spread.indexOf(from) + 1) % spread.length];
        await ledger.transfer({ idempotencyKey: key('concurrent'), from, to, amount: '1' });
        return 1;
      }),
    );

    // contended: the same writers over 4 accounts.
    const hot = spread.slice(0, 4);
    if (scenarios.has('contended')) results.push(
      await measure('contended', 'transfers', writers, async (writer, i) => {
        const from = hot[(writer + i) % 4];
        const to = hot[(writer + i + 1 + (writer % 3)) % 4];
        await ledger.transfer({ idempotencyKey: key('contended'), from, to, amount: '1' });
        return 1;
      }),
    );

    // http: signed transfers through the API (JSON, bounds, zod, signature recovery, then the ledger's group commit).
    let baseline = null;
    if (scenarios.has('http')) {
      baseline = { scenario: 'ethers-recovery', unit: 'recoveries (one core, JS)', ...(await ethersRecoveryRate()) };
      const wallets = Array.from({ length: writers }, () => Wallet.createRandom());
      const signers = wallets.map(nativeSigner);
      const probe = { n: 1 };
      if ((await signRequest(signers[0], SignedKind.transfer, probe)) !== (await signRequest(wallets[0], SignedKind.transfer, probe))) throw new Error('the native signer disagrees with ethers');
      for (const wallet of wallets) await fund(wallet.address, 10n ** 24n);
      const port = await freePort();
      const bankProcess = await spawnBankProcess({
        DATABASE_URL: databaseUrl, DATABASE_SCHEMA: tag, DATABASE_POOL_SIZE: '16', REDIS_URL: redisUrl, REDIS_PREFIX: tag,
        PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', BANK_SERVICE_TOKEN: 'bench-service-token-0123456789abcdef',
      }, (process.env.BENCH_BANK_NODE_ARGS ?? '').split(' ').filter(Boolean)); // e.g. --cpu-prof --cpu-prof-dir=DIR to profile the bank
      const clients = Array.from({ length: writers }, () => httpClient(port)); // a connection per writer
      let http;
      try {
        // Signed before the clock starts (the bench measures the bank, not its clients' signing): a pool
        // per writer, more than the bank can take in BENCH_SECONDS; a writer that runs out signs as it goes.
        const pool = writers * Math.ceil((seconds * 4000) / writers);
        const signedBodies = Array.from({ length: writers }, () => []);
        const signedBody = async (writer) => {
          const signer = signers[writer];
          const transfer = { from: signer.address, to: spread[writer % spread.length], amount: '1', idempotencyKey: key('http'), expiresAt: Date.now() + 600_000 };
          return JSON.stringify({ transfer, signature: await signRequest(signer, SignedKind.transfer, transfer) });
        };
        for (let i = 0; i < pool; i++) signedBodies[i % writers].push(await signedBody(i % writers));
        const cpuBefore = bankProcess.cpu();
        const postgresBefore = postgresCpuSeconds();
        const machineBefore = machineCpu();
        const benchBefore = process.cpuUsage();
        const loadBefore = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
        http = await measure('http', 'signed transfers', writers, async (writer, i) => {
          const reply = await clients[writer]('/transfers', signedBodies[writer][i] ?? (await signedBody(writer)));
          if (reply.status !== 201) throw new Error(`POST /transfers answered ${reply.status}: ${reply.text}`);
          return 1;
        });
        // Where the time goes: CPU of the bank process and of all PostgreSQL processes per transfer.
        const benchCpu = process.cpuUsage(benchBefore);
        const cpuAfter = bankProcess.cpu();
        const machineAfter = machineCpu();
        const perTransfer = (seconds) => Number(((seconds * 1000) / http.operations).toFixed(3));
        http.bankCpuMsPerTransfer = perTransfer(cpuAfter.user - cpuBefore.user + cpuAfter.system - cpuBefore.system);
        http.bankUserMsPerTransfer = perTransfer(cpuAfter.user - cpuBefore.user);
        http.bankSystemMsPerTransfer = perTransfer(cpuAfter.system - cpuBefore.system);
        // The bench's own clients (node:http keep-alive, bodies signed beforehand) share the machine's cores.
        http.clientsCpuMsPerTransfer = perTransfer((benchCpu.user + benchCpu.system) / 1e6);
        // How busy the whole machine was meanwhile (other work on it slows every process of the bench).
        const busy = machineAfter.busy - machineBefore.busy;
        http.machineBusyPercent = Math.round((100 * busy) / (busy + machineAfter.idle - machineBefore.idle));
        http.loadAverage = `${loadBefore} -> ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`;
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        const batches = Number(/commune_bank_transaction_seconds_count\{operation="transfer"\} (\d+)/.exec(metrics)?.[1] ?? NaN);
        http.transfersPerBatch = Number((http.operations / batches).toFixed(1));
        http.postgresCpuMsPerTransfer = Number((((postgresCpuSeconds() - postgresBefore) * 1000) / http.operations).toFixed(3));
      } finally {
        await bankProcess.stop();
      }
      http.baseline = baseline;
      http.ratioToBaseline = Number((http.perSecond / baseline.perSecond).toFixed(2));
      results.push(http);
    }

    const audit = await ledger.audit();
    const consistent = audit.sumOfBalances === '0' && Object.values(audit).every((value) => !Array.isArray(value) || value.length === 0);
    const stats = await bank.app.get(PrismaService).pool.query('SELECT (SELECT count(*) FROM transfers)::int AS transfers, (SELECT count(*) FROM entries)::int AS entries');

    console.log(`\nledger throughput (${seconds} s per scenario, Postgres ${databaseUrl.replace(/\/\/[^@]*@/, '//')}, schema ${tag})\n`);
    console.log('scenario     unit               writers   ops/s    call p50 ms   call p99 ms');
    for (const row of results) {
      console.log(
        `${row.scenario.padEnd(12)} ${row.unit.padEnd(18)} ${String(row.writers).padStart(7)} ${String(row.perSecond).padStart(7)} ${String(row.callP50Ms).padStart(13)} ${String(row.callP99Ms).padStart(13)}`,
      );
    }
    const httpRow = results.find((row) => row.scenario === 'http');
    if (httpRow) {
      console.log(
        `\nbaseline (same run): ethers' JS recovery ${baseline.perSecond}/s on one core (${baseline.cpuMsPerRecovery} ms of CPU each); ` +
          `signed transfers over HTTP = ${httpRow.ratioToBaseline}x that`,
      );
      console.log(
        `CPU per signed transfer: bank process ${httpRow.bankCpuMsPerTransfer} ms (user ${httpRow.bankUserMsPerTransfer}, kernel ${httpRow.bankSystemMsPerTransfer}), ` +
          `PostgreSQL ${httpRow.postgresCpuMsPerTransfer} ms (every postgres process: other clients of the server count too); ${httpRow.transfersPerBatch} transfers per ledger transaction`,
      );
      const together = httpRow.bankCpuMsPerTransfer + Math.max(0, httpRow.postgresCpuMsPerTransfer) + httpRow.clientsCpuMsPerTransfer;
      console.log(
        `the bench's clients ${httpRow.clientsCpuMsPerTransfer} ms; bank, PostgreSQL and clients together ${together.toFixed(3)} ms of CPU per transfer, ` +
          `so at most ~${Math.round((availableParallelism() * 1000) / together)}/s on this machine's ${availableParallelism()} cores at this run's CPU speed`,
      );
      console.log(`machine during the http run: ${httpRow.machineBusyPercent}% of all cores busy, load average ${httpRow.loadAverage} (the bench, its bank and PostgreSQL included)`);
    }
    console.log(`\nledger consistent afterwards: ${consistent} (${stats.rows[0].transfers} transfers, ${stats.rows[0].entries} entries)\n`);
    const report = { benchmark: 'ledger', at: new Date().toISOString(), seconds, batchSize, results, consistent };
    console.log(JSON.stringify(report, null, 2));
    mkdirSync(join(root, 'bench/results'), { recursive: true });
    writeFileSync(join(root, 'bench/results/ledger-latest.json'), JSON.stringify(report, null, 2) + '\n');
  } finally {
    await bank.close();
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS "${tag}" CASCADE`).finally(() => client.end());
    const redis = new Redis(redisUrl);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${tag}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
    redis.disconnect();
  }
}

main().catch((error) => {
  console.error(`ledger bench failed: ${error.stack ?? error}`);
  process.exit(1);
});
