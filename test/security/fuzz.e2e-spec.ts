import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { Namespaces } from '@commune/protocol';
import { freePort, repoRoot, spawnScheduler, type RunningProcess } from '../support/processes.js';
import { seededRandom } from '../support/random.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../support/services.js';

/** Bounded by design: the counts the issue asks for, spread over a few sockets and HTTP connections. */
const socketMessages = Number(process.env.FUZZ_MESSAGES ?? 100_000);
const restCalls = Number(process.env.FUZZ_REST ?? 10_000);
const seed = Number(process.env.TEST_SEED ?? 20261203);

/** Text a reply must never hold: stack frames, source paths, runtime error names, SQL, internal modules. */
const leak = /\n\s+at |\bat [\w.<>]+ \(|node_modules|\/work\/|\.(?:ts|js|mjs):\d|(?:Type|Reference|Range|Syntax)Error|prisma|PrismaClient|SELECT |INSERT |ECONNREFUSED|ioredis|stack/i;

const rssMbOf = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

interface Bank {
  child: ReturnType<typeof spawn>;
  url: string;
  output: () => string;
  stop(): Promise<void>;
}

/** The bank as a process (no bridge), as `pnpm start` runs it; resolves once it listens. */
async function spawnBank(env: Record<string, string>): Promise<Bank> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(repoRoot, 'apps/bank/dist/main.js')], { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-400_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const bank: Bank = {
    child,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  await waitFor('the bank to listen', async () => {
    if (child.exitCode !== null) throw new Error(`the bank exited: ${output}`);
    return (await fetch(`${bank.url}/health`).catch(() => null))?.ok;
  }, 30_000, 100);
  return bank;
}

/** Routes a Nest service logged at start ("Mapped {/path, METHOD} route"). */
function routesOf(output: string): Array<{ path: string; method: string }> {
  const routes = new Map<string, { path: string; method: string }>();
  for (const match of output.matchAll(/Mapped \{([^,}]+), (\w+)\} route/g)) routes.set(`${match[2]} ${match[1]}`, { path: match[1]!, method: match[2]! });
  return [...routes.values()];
}

/**
 * Fuzzing the scheduler and the bank as real processes: 100,000 malformed socket.io messages over
 * /client and /worker (wrong shapes, wrong types, deep and wide values, unknown events, raw
 * protocol garbage) and 10,000 malformed REST calls spread over every route both services
 * mapped. Seeded (TEST_SEED replays a run). Neither dies, /health stays ok, no reply carries a
 * stack or internal text, and the scheduler's RSS comes back within 10% of where it started.
 */
describe('fuzz: malformed messages and requests (security, e2e)', () => {
  const env = isolatedEnvironment({ LOG_LEVEL: 'info', NODE_OPTIONS: '--max-old-space-size=128' });
  const bankEnv = { ...env, DATABASE_SCHEMA: `${env.DATABASE_SCHEMA}_bank`, REDIS_PREFIX: `${env.REDIS_PREFIX}_bank`, BANK_SERVICE_TOKEN: 'fuzz-service-token-0123456789abcdef0123', NODE_OPTIONS: '' };
  let scheduler: RunningProcess & { url: string };
  let bank: Bank;
  const random = seededRandom(seed);
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const leaks: string[] = [];
  const serverErrors: string[] = [];
  const closedWithoutAnswer: string[] = [];
  const unansweredMessages: string[] = [];

  beforeAll(async () => {
    scheduler = await spawnScheduler(env, await freePort());
    bank = await spawnBank(bankEnv);
  }, 60_000);

  afterAll(async () => {
    await scheduler?.stop();
    await bank?.stop();
    await dropIsolated(env);
    await dropIsolated(bankEnv);
  }, 30_000);

  // ---------------------------------------------------------------- generators

  const weirdStrings = ['', ' ', '\u0000', '\ud800', '💥'.repeat(50), '__proto__', 'constructor', '../../etc/passwd', '%00', '${7*7}', "' OR 1=1 --", 'j_', 't_', '0x', 'null', 'NaN'];
  const fieldNames = ['jobId', 'taskId', 'sliceIndex', 'slices', 'outcomes', 'status', 'value', 'elapsedMs', 'maxSlices', 'sliceIndexes', 'console', 'custom', 'job', 'signature', 'request', 'action', 'nonce', 'expiresAt', 'owner', 'readToken', 'grant', 'op', 'key', 'results', '__proto__', 'constructor', 'prototype'];

  function text(): string {
    switch (int(5)) {
      case 0: return pick(weirdStrings);
      case 1: return `j_${Array.from({ length: 1 + int(45) }, () => pick([...'0123456789abcdefxyz'])).join('')}`;
      case 2: return String.fromCharCode(...Array.from({ length: int(40) }, () => int(0xffff)));
      case 3: return 'x'.repeat(int(100) === 0 ? 20_000 + int(50_000) : int(200));
      default: return pick(fieldNames);
    }
  }
  function number(): number {
    return pick([0, -1, 1, 0.5, -0.0, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, 1e12, Number.MAX_SAFE_INTEGER, int(1000), -int(1000)]);
  }
  function value(depth = 0): unknown {
    const roll = int(depth > 3 ? 4 : 9);
    switch (roll) {
      case 0: return null;
      case 1: return random() < 0.5;
      case 2: return number();
      case 3: return text();
      case 4: return Array.from({ length: int(6) }, () => value(depth + 1));
      case 5: {
        const object: Record<string, unknown> = {};
        for (let i = int(6); i > 0; i--) object[pick(fieldNames)] = value(depth + 1);
        return object;
      }
      case 6: {
        // Deep: beyond Limits.maxValueDepth most of the time.
        let nested: unknown = value(5);
        for (let i = 40 + int(260); i > 0; i--) nested = random() < 0.5 ? [nested] : { [pick(fieldNames)]: nested };
        return nested;
      }
      case 7: return Array.from({ length: 50 + int(300) }, () => int(10));
      default: return { [pick(fieldNames)]: value(depth + 1), [pick(fieldNames)]: value(depth + 1) };
    }
  }
  /**
   * Payloads are drawn from a seeded pool per event (generated once), so the test's own CPU goes to
   * sending them rather than making them; the pool is large enough that every shape recurs often.
   */
  const pools = new Map<string, unknown[]>();
  function pooled(event: string): unknown {
    let pool = pools.get(event);
    if (pool === undefined) {
      pool = Array.from({ length: 200 }, () => payload(event));
      pools.set(event, pool);
    }
    return pool[int(pool.length)];
  }
  /** A payload shaped like the real one with fields of the wrong kind, or anything at all. */
  function payload(event: string): unknown {
    if (int(3) === 0) return value();
    const outcome = () => ({ sliceIndex: pick([number(), text()]), status: pick(['ok', 'error', text()]), elapsedMs: number(), value: value(), error: value() });
    const shapes: Record<string, () => unknown> = {
      'task:request': () => ({ maxSlices: pick([number(), text(), value()]) }),
      'task:results': () => ({ taskId: pick([`t_${text()}`, text()]), jobId: text(), outcomes: pick([Array.from({ length: int(5) }, outcome), value()]) }),
      'task:return': () => ({ taskId: text(), jobId: text(), sliceIndexes: pick([Array.from({ length: int(5) }, number), value()]) }),
      'task:events': () => ({ jobId: text(), taskId: value(), console: [{ sliceIndex: number(), level: pick(['log', text()]), message: value() }], custom: [{ sliceIndex: number(), event: text(), value: value() }] }),
      deploy: () => ({ job: { owner: text(), work: pick([text(), value()]), inputSet: value(), arguments: value(), nonce: text(), issuedAt: number(), expiresAt: number() }, signature: pick([text(), `0x${'ab'.repeat(65)}`]) }),
      subscribe: () => ({ jobId: text(), readToken: value(), grant: value() }),
      'job:action': () => ({ request: { action: pick(['cancel', 'pause', 'resume', 'escrow', text()]), jobId: text(), nonce: text(), expiresAt: number() }, signature: text() }),
    };
    return (Object.hasOwn(shapes, event) ? shapes[event]! : () => ({ [pick(fieldNames)]: value() }))();
  }

  function checkReply(where: string, reply: unknown): void {
    if (reply === undefined) return;
    const body = JSON.stringify(reply) ?? '';
    if (leak.test(body) && leaks.length < 20) leaks.push(`${where}: ${body.slice(0, 300)}`);
    const code = (reply as { code?: unknown } | null)?.code;
    if ((code === 'ESCHEDULER' || code === 'EBANK') && serverErrors.length < 20) serverErrors.push(`${where}: ${body.slice(0, 300)}`);
  }

  async function expectServing(): Promise<void> {
    if (scheduler.child.exitCode !== null || bank.child.exitCode !== null) {
      throw new Error(`a service died (first requests closed without an answer: ${closedWithoutAnswer.join(' | ')}); scheduler: ${scheduler.output().slice(-3000)} bank: ${bank.output().slice(-3000)}`);
    }
    expect(scheduler.child.exitCode).toBeNull();
    expect(bank.child.exitCode).toBeNull();
    expect((await fetch(`${scheduler.url}/health`)).status).toBe(200);
    expect((await fetch(`${bank.url}/health`)).status).toBe(200);
  }

  // ---------------------------------------------------------------- sockets

  function connect(namespace: string): Promise<Socket> {
    const auth = namespace === Namespaces.worker ? { workerId: `w_fuzz_${int(1e9)}`, sandboxes: 1 + int(4), capabilities: {} } : undefined;
    const socket = io(scheduler.url + namespace, { transports: ['websocket'], forceNew: true, reconnection: false, ...(auth ? { auth } : {}) });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${namespace} did not connect within 15 s`)), 15_000);
      socket.once('connect', () => { clearTimeout(timer); resolve(socket); });
      socket.once('connect_error', (error) => { clearTimeout(timer); reject(error); });
    });
  }

  /** Events the scheduler answers (each through its bounded handler), and events nobody answers ('error' among them). */
  const answered = {
    [Namespaces.client]: ['deploy', 'subscribe', 'unsubscribe', 'job:action', 'state:get', 'state:op', 'state:subscribe', 'state:unsubscribe'],
    [Namespaces.worker]: ['task:request', 'task:results', 'task:return', 'task:events'],
  } as const;
  const unanswered = ['error', 'job:stop', 'job:results', 'work:available', 'ping'];
  const garbage = (namespace: string) => pick(['2/nope,["x"]', '5999-' + namespace + ',["x"]', '2' + namespace + ',{"a":', '9', '2' + namespace + ',1[' + '['.repeat(50_000)]);

  /**
   * Sends `count` malformed messages on sockets of `namespace`, 250 at a time (their acks awaited
   * together); now and then raw protocol garbage, after which the socket is replaced. Returns how
   * many messages were answered.
   */
  async function flood(namespace: typeof Namespaces.client | typeof Namespaces.worker, count: number): Promise<number> {
    let socket = await connect(namespace);
    let replies = 0;
    const batch = 500;
    for (let sent = 0; sent < count; sent += batch) {
      const pending: Array<Promise<void>> = [];
      let sendGarbage = false;
      for (let i = 0; i < batch && sent + i < count; i++) {
        const roll = int(400);
        if (roll === 0) {
          sendGarbage = true;
          continue;
        }
        const event = roll < 40 ? pick([pick(fieldNames), ...unanswered]) : pick(answered[namespace]);
        const body = pooled(event);
        if (roll < 40 || roll % 5 === 0) {
          socket.emit(event, body); // no ack, or nobody answers: a handler must not crash for want of one
          continue;
        }
        pending.push(
          socket.timeout(15_000).emitWithAck(event, body).then(
            (reply: unknown) => {
              replies++;
              checkReply(`${namespace} ${event}`, reply);
            },
            (error: Error) => {
              if (unansweredMessages.length < 5) unansweredMessages.push(`${namespace} ${event}: ${error.message}`);
            },
          ),
        );
      }
      await Promise.all(pending);
      if (sendGarbage || !socket.connected) {
        // Raw protocol garbage: socket.io drops the connection (or ignores the packet), never the process.
        socket.io.engine.write(garbage(namespace));
        await new Promise((resolve) => setTimeout(resolve, 20));
        socket.disconnect();
        socket = await connect(namespace);
      }
    }
    socket.disconnect();
    return replies;
  }

  // ---------------------------------------------------------------- REST

  /** encodeURIComponent of any string (lone surrogates, which it refuses, replaced first). */
  const encode = (value: string) => encodeURIComponent(value.replace(/[\ud800-\udfff]/g, '\ufffd'));
  function restPath(path: string): string {
    const filled = path.replace(/:(\w+)/g, () => encode(pick([text(), text(), `j_${int(1e12).toString(36)}aaaaaaaaaa`, '0x' + 'f'.repeat(40), '..%2f..', '%', '%ZZ'])));
    const query = int(3) === 0 ? '' : `?${pick(fieldNames)}=${encode(text())}&slices=${encode(JSON.stringify(value()) ?? '')}&after=${number()}&limit=${number()}`;
    return (filled.includes('%') && int(4) === 0 ? filled.replace(/%[0-9A-F]{2}/, '%') : filled) + query;
  }
  function restBody(): { body?: string; type?: string } {
    switch (int(6)) {
      case 0: return {};
      case 1: return { body: '{"a":', type: 'application/json' };
      case 2: return { body: JSON.stringify(value()) ?? 'null', type: 'application/json' };
      case 3: return { body: '['.repeat(5000 + int(50_000)) + ']'.repeat(10), type: 'application/json' };
      case 4: return { body: text(), type: pick(['text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream']) };
      default: return { body: JSON.stringify(pooled('deploy')), type: 'application/json' };
    }
  }

  async function restFuzz(base: string, routes: Array<{ path: string; method: string }>, count: number, service: string): Promise<Map<number, number>> {
    const statuses = new Map<number, number>();
    let next = 0;
    const one = async () => {
      const route = pick(routes);
      const method = int(10) === 0 ? pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH']) : route.method;
      const { body, type } = restBody();
      const headers: Record<string, string> = {};
      if (type) headers['content-type'] = type;
      for (const name of ['x-commune-owner', 'x-commune-nonce', 'x-commune-expires-at', 'x-commune-signature', 'x-commune-read-token', 'authorization', 'x-service-token']) {
        if (int(3) === 0) headers[name] = text().replace(/[^\x20-\x7e]/g, 'x').slice(0, 2000);
      }
      const target = base + restPath(route.path);
      let response: Response;
      let reply: string;
      try {
        response = await fetch(target, { method, headers, ...(body !== undefined && method !== 'GET' ? { body } : {}) });
        reply = await response.text();
      } catch (error) {
        // A connection the server closed without an answer (Node's HTTP parser does so for malformed requests) counts as status 0.
        statuses.set(0, (statuses.get(0) ?? 0) + 1);
        if (closedWithoutAnswer.length < 5) closedWithoutAnswer.push(`${service} ${method} ${target.slice(0, 200)}: ${(error as Error).message} ${String((error as { cause?: unknown }).cause ?? '')}`);
        return;
      }
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
      if (leak.test(reply) && leaks.length < 20) leaks.push(`${service} ${method} ${route.path} -> ${response.status}: ${reply.slice(0, 300)}`);
      if (response.status >= 500 && response.status !== 503 && serverErrors.length < 20) serverErrors.push(`${service} ${method} ${route.path} -> ${response.status}: ${reply.slice(0, 300)}`);
    };
    await Promise.all(Array.from({ length: 32 }, async () => {
      while (next++ < count) await one();
    }));
    return statuses;
  }

  // ---------------------------------------------------------------- the run

  it(`takes ${socketMessages} malformed socket.io messages and ${restCalls} malformed REST calls without a crash, a leak or a lasting RSS rise (seed ${seed})`, async () => {
    const schedulerRoutes = routesOf(scheduler.output());
    const bankRoutes = routesOf(bank.output());
    expect(schedulerRoutes.length).toBeGreaterThanOrEqual(10);
    expect(bankRoutes.length).toBeGreaterThanOrEqual(5);

    // Warm up (heap, JIT, connection pools) before the baseline.
    const warmup = Date.now();
    await Promise.all([flood(Namespaces.client, 2000), flood(Namespaces.worker, 2000), restFuzz(scheduler.url, schedulerRoutes, 300, 'scheduler')]);
    await expectServing();
    process.stdout.write(`fuzz warm-up: ${Date.now() - warmup} ms\n`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const baselineMb = rssMbOf(scheduler.child.pid!);

    const started = Date.now();
    const half = socketMessages / 2;
    const timings: Record<string, number> = {};
    const timed = async <T>(name: string, work: Promise<T>): Promise<T> => {
      const result = await work;
      timings[name] = Date.now() - started;
      return result;
    };
    const [clientAnswered, workerAnswered, schedulerStatuses, bankStatuses] = await Promise.all([
      timed('client', flood(Namespaces.client, half)),
      timed('worker', flood(Namespaces.worker, half)),
      timed('schedulerRest', restFuzz(scheduler.url, schedulerRoutes, restCalls / 2, 'scheduler')),
      timed('bankRest', restFuzz(bank.url, bankRoutes, restCalls / 2, 'bank')),
    ]);
    process.stdout.write(`fuzz phases (ms): ${JSON.stringify(timings)}\n`);
    const seconds = (Date.now() - started) / 1000;
    await expectServing();

    // Most messages are answered (with a named refusal); the rest had no ack or no listener.
    expect(clientAnswered + workerAnswered).toBeGreaterThan(socketMessages / 2);
    expect([...schedulerStatuses.values()].reduce((a, b) => a + b, 0)).toBe(restCalls / 2);
    expect([...bankStatuses.values()].reduce((a, b) => a + b, 0)).toBe(restCalls / 2);
    expect(unansweredMessages).toEqual([]);
    expect(leaks).toEqual([]);
    expect(serverErrors).toEqual([]);

    // RSS comes back within 10% of the warmed-up baseline (V8 gives pages back after its next GCs).
    const settled = await waitFor('scheduler RSS within 10% of its baseline', () => {
      const rss = rssMbOf(scheduler.child.pid!);
      return rss <= baselineMb * 1.1 ? rss : null;
    }, 20_000, 500).catch(() => rssMbOf(scheduler.child.pid!));
    process.stdout.write(
      `fuzz (seed ${seed}): ${socketMessages} messages, ${restCalls} REST calls in ${seconds.toFixed(1)} s; answered ${clientAnswered + workerAnswered}; ` +
        `scheduler statuses ${JSON.stringify(Object.fromEntries(schedulerStatuses))}, bank ${JSON.stringify(Object.fromEntries(bankStatuses))}; RSS ${baselineMb.toFixed(0)} -> ${settled.toFixed(0)} MB\n`,
    );
    expect(settled).toBeLessThanOrEqual(baselineMb * 1.1);
    await expectServing();
  }, 240_000);
});
