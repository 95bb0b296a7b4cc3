import { afterEach, describe, expect, it } from '@jest/globals';
import { checkBounds, ErrorCode, hashOf, Limits, moduleTableHashOf, newId, type ModuleTable, type SliceOutcome, type Task, type TaskResults, type TaskReturn, type WorkerEvents } from '@commune/protocol';
import { SandboxPool, workHashOf } from '@commune/sandbox';
import { Earnings } from './earnings.js';
import { createLogger, type LogLevel } from './log.js';
import { splitByWeight, Supervisor, type SupervisorTiming, type WorkerSocket } from './supervisor.js';

type Responder = (payload: never) => unknown;

/**
 * Stands in for the socket.io client and the scheduler behind it: records what the worker
 * sends, answers acknowledgements with `responders`, and lets a test fire server events.
 */
class FakeSocket {
  connected = false;
  active = false;
  /**
   * What connect() does: 'connect' connects; 'unreachable' fails like a transport error (socket.io
   * would retry: active stays true); 'refused' fails like a handshake refused by the scheduler
   * (active false), with `refusal` as the error message.
   */
  answer: 'connect' | 'unreachable' | 'refused' = 'connect';
  refusal = 'EUNAVAILABLE: this scheduler replica is shutting down; connect to another one';
  /** When connect() was called (performance.now()). */
  readonly connectCalls: number[] = [];
  readonly sent: Array<{ event: string; payload: unknown; at: number }> = [];
  readonly responders: Record<string, Responder> = {};
  private readonly listeners = new Map<string, Array<(...args: never[]) => void>>();
  /** Acknowledgements not answered yet: socket.io rejects them when the connection is lost. */
  private readonly pendingAcks = new Set<(error: Error) => void>();
  /** Tasks handed out by the default task:request responder, in order. */
  readonly offered: Task[] = [];

  constructor(readonly url = 'http://scheduler.test') {
    this.responders['task:request'] = (request: { maxSlices: number }) => {
      const tasks: Task[] = [];
      let slices = 0;
      while (this.offered.length > 0 && (tasks.length === 0 || slices + this.offered[0].slices.length <= request.maxSlices)) {
        const task = this.offered.shift()!;
        slices += task.slices.length;
        tasks.push(task);
      }
      return { tasks };
    };
    this.responders['task:results'] = (results: TaskResults) => ({ ok: true, accepted: results.outcomes.map((o) => o.sliceIndex), refused: [] });
    this.responders['task:return'] = (request: TaskReturn) => ({ ok: true, returned: request.sliceIndexes.length });
  }

  on(event: string, listener: (...args: never[]) => void): this {
    const list = this.listeners.get(event) ?? [];
    list.push(listener);
    this.listeners.set(event, list);
    return this;
  }

  emit(event: string, payload: unknown): this {
    this.sent.push({ event, payload, at: performance.now() });
    return this;
  }

  timeout(ms: number) {
    return {
      emitWithAck: (event: string, payload: unknown): Promise<unknown> => {
        this.sent.push({ event, payload, at: performance.now() });
        const responder = this.responders[event];
        if (!this.connected || responder === undefined) {
          return new Promise((_, reject) => setTimeout(() => reject(new Error('operation has timed out')), ms));
        }
        return new Promise((resolve, reject) => {
          this.pendingAcks.add(reject);
          setImmediate(() => {
            if (!this.pendingAcks.has(reject)) return;
            // A responder may answer with a promise (one that never settles holds the ack until the connection drops).
            void Promise.resolve(responder(payload as never)).then((value) => {
              if (this.pendingAcks.delete(reject)) resolve(value);
            });
          });
        });
      },
    };
  }

  connect(): this {
    this.connectCalls.push(performance.now());
    this.active = true;
    if (this.connected) return this;
    if (this.answer === 'connect') {
      this.connected = true;
      setImmediate(() => this.fire('connect'));
    } else {
      if (this.answer === 'refused') this.active = false;
      const message = this.answer === 'refused' ? this.refusal : 'websocket error';
      setImmediate(() => this.fire('connect_error', new Error(message)));
    }
    return this;
  }

  disconnect(): this {
    this.active = false;
    if (this.connected) {
      this.connected = false;
      this.fire('disconnect', 'io client disconnect');
      this.rejectAcks();
    }
    return this;
  }

  /** The connection dropped (the worker did not ask for it); 'io server disconnect' is the scheduler closing it (a drain). */
  drop(reason = 'transport close'): void {
    this.connected = false;
    if (reason === 'io server disconnect') this.active = false;
    this.fire('disconnect', reason);
    this.rejectAcks();
  }

  /** As socket.io does after 'disconnect': acknowledgements still awaited are rejected. */
  private rejectAcks(): void {
    for (const reject of [...this.pendingAcks]) reject(new Error('socket has been disconnected'));
    this.pendingAcks.clear();
  }

  fire(event: string, ...args: unknown[]): void {
    for (const listener of this.listeners.get(event) ?? []) listener(...(args as never[]));
  }

  sentOf<T = unknown>(event: string): T[] {
    return this.sent.filter((message) => message.event === event).map((message) => message.payload as T);
  }

  asSocket(): WorkerSocket {
    return this as unknown as WorkerSocket;
  }
}

function makeTask(work: string, sliceIndexes: number[], overrides: Partial<Task> = {}): Task {
  return {
    taskId: newId('t'),
    jobId: overrides.jobId ?? newId('j'),
    workHash: workHashOf(work),
    work,
    arguments: [],
    public: { name: 'test job' },
    slices: sliceIndexes.map((sliceIndex) => ({ sliceIndex, datum: sliceIndex })),
    leaseDeadline: Date.now() + 60_000,
    progressTimeoutMs: 30_000,
    sliceTimeLimitMs: 300_000,
    spreadDatum: false,
    ...overrides,
  };
}

async function waitUntil(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function outcomesOf(socket: FakeSocket, taskId?: string): SliceOutcome[] {
  return socket
    .sentOf<TaskResults>('task:results')
    .filter((results) => taskId === undefined || results.taskId === taskId)
    .flatMap((results) => results.outcomes);
}

const slow = (ms: number) => `function (x) { const end = Date.now() + ${ms}; while (Date.now() < end) progress(); return x; }`;

describe(Supervisor.name, () => {
  let cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const step of cleanup.reverse()) await step();
    cleanup = [];
  });

  function setup(options: { sandboxes?: number; timing?: Partial<SupervisorTiming>; earnings?: Earnings; schedulers?: string[]; answers?: Record<string, FakeSocket['answer']> } = {}) {
    const sockets = new Map<string, FakeSocket>();
    const pool = new SandboxPool(options.sandboxes ?? 1);
    const lines: Array<{ level: LogLevel; line: string }> = [];
    const log = createLogger({ verbose: true, write: (line, level) => lines.push({ level, line }) });
    const schedulers = options.schedulers ?? ['http://scheduler.test'];
    const supervisor = new Supervisor({
      schedulers,
      socketFor: (url) => {
        const made = new FakeSocket(url);
        made.answer = options.answers?.[url] ?? 'connect';
        sockets.set(url, made);
        return made.asSocket();
      },
      pool,
      log,
      workerId: 'w_testworker01',
      timing: { summaryMs: 60_000, pollMs: 60_000, ackTimeoutMs: 500, ...options.timing },
      earnings: options.earnings,
    });
    cleanup.push(async () => {
      await supervisor.stop();
      await pool.close();
    });
    const logged = (pattern: RegExp, level?: LogLevel) => lines.some((entry) => pattern.test(entry.line) && (level === undefined || entry.level === level));
    // The supervisor makes the first URL's socket at once, the others when it first moves to them.
    const socket = sockets.get(schedulers[0]!)!;
    return { socket, sockets, pool, supervisor, lines, logged };
  }

  describe('earnings (--bank with --earnings)', () => {
    const earningsAddress = '0x52908400098527886E0F7030069857D2E4169EE7';
    /** An earnings account whose balance (DCC) the bank gives as `balances`, one per request (the last one repeats). */
    function bankWith(...balances: string[]) {
      const requested: string[] = [];
      const fakeFetch = async (input: string | URL | Request) => {
        requested.push(String(input));
        const balance = balances.length > 1 ? balances.shift()! : balances[0]!;
        const units = (BigInt(Math.round(Number(balance) * 1e6)) * 10n ** 12n).toString();
        return new Response(JSON.stringify({ address: earningsAddress, balance: units }), { status: 200 });
      };
      const earnings = new Earnings({ bank: 'http://bank.test:4100', address: earningsAddress, fetch: fakeFetch as typeof fetch, minIntervalMs: 0 });
      return { earnings, requested };
    }

    it('shows the balance at start and, with the change since start, in the summary line', async () => {
      const { earnings, requested } = bankWith('1.5', '2');
      const { socket, supervisor, lines, logged } = setup({ earnings, timing: { summaryMs: 100 } });
      socket.offered.push(makeTask(slow(400), [0]));
      supervisor.start();
      await waitUntil(() => logged(/earnings account/), 2000, 'the starting balance');
      expect(logged(new RegExp(`earnings account ${earningsAddress}: 1.5 DCC \\(bank http://bank.test:4100\\)`), 'info')).toBe(true);
      await waitUntil(() => logged(/slices done.*; earnings/), 3000, 'a summary with earnings');
      const summary = lines.find((entry) => /slices done.*; earnings/.test(entry.line))!.line;
      expect(summary).toMatch(/\d+ slices done \(0 errors\), \d+ slices\/s, .* tasks; earnings 2 DCC \(\+0.5 since start\)$/);
      expect(requested[0]).toBe(`http://bank.test:4100/accounts/${earningsAddress}`);
      await supervisor.stop();
      expect(logged(/done: 1 slices .*; earnings 2 DCC \(\+0.5 since start\)/)).toBe(true);
    });

    it('says when the earnings change while the worker is idle (payments settle after the work), once per change', async () => {
      const { earnings } = bankWith('1', '1', '3');
      const { supervisor, lines } = setup({ earnings, timing: { summaryMs: 50 } });
      supervisor.start();
      await waitUntil(() => lines.some((entry) => /^\S+ INFO  earnings 3 DCC \(\+2 since start\)$/.test(entry.line)), 3000, 'the change to be logged');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(lines.filter((entry) => / earnings \d/.test(entry.line)).map((entry) => entry.line.replace(/^\S+ INFO  /, ''))).toEqual(['earnings 3 DCC (+2 since start)']);
    });

    it('warns when the bank cannot be read at start, and keeps working', async () => {
      const earnings = new Earnings({ bank: 'http://bank.test:4100', address: earningsAddress, fetch: (async () => { throw new TypeError('fetch failed'); }) as typeof fetch });
      const { socket, supervisor, logged } = setup({ earnings });
      socket.offered.push(makeTask('(x) => (progress(1), x)', [0]));
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 1, 5000, 'the task');
      expect(logged(new RegExp(`cannot read the earnings account ${earningsAddress} at http://bank.test:4100: fetch failed`), 'warn')).toBe(true);
    });
  });

  it('asks for work on connect, runs each task and sends its outcomes', async () => {
    const { socket, supervisor, logged } = setup({ sandboxes: 2 });
    const work = '(x, k) => (progress(1), x * k)';
    const first = makeTask(work, [0, 1, 2], { arguments: [10] });
    // The scheduler sends the source only once per connection.
    const second = makeTask(work, [3, 4], { jobId: first.jobId, arguments: [10], work: undefined });
    socket.offered.push(first, second);
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 2, 5000, 'both tasks to finish');

    expect(socket.sentOf('task:request')[0]).toEqual({ maxSlices: expect.any(Number) });
    const outcomes = outcomesOf(socket);
    expect(outcomes.map((o) => o.sliceIndex).sort()).toEqual([0, 1, 2, 3, 4]);
    for (const outcome of outcomes) expect(outcome).toMatchObject({ status: 'ok', value: outcome.sliceIndex * 10 });
    expect(outcomesOf(socket, second.taskId).map((o) => o.sliceIndex).sort()).toEqual([3, 4]);
    for (const results of socket.sentOf<TaskResults>('task:results')) expect(results.jobId).toBe(first.jobId);
    expect(supervisor.stats).toMatchObject({ slicesOk: 5, slicesFailed: 0, accepted: 5, refused: 0 });
    expect(logged(/connected to http:\/\/scheduler\.test as w_testworker01/)).toBe(true);
    expect(logged(new RegExp(`task ${first.taskId}: job ${first.jobId} "test job", 3 slices`))).toBe(true);
    expect(logged(new RegExp(`task ${second.taskId} finished in [\\d.]+ s: 2 ok, 0 errors; 2 accepted, 0 refused`))).toBe(true);
  });

  it('spreads each datum into the work function when the task says spreadDatum (multi-range jobs), and only then', async () => {
    const { socket, supervisor } = setup();
    const work = '(i, j, k) => (progress(1), [i, j, k])';
    const spread = makeTask(work, [0, 1], { spreadDatum: true, arguments: ['k'] });
    spread.slices = [{ sliceIndex: 0, datum: [1, 3] }, { sliceIndex: 1, datum: [2, 5] }];
    const plain = makeTask(work, [0], { arguments: ['k'] });
    plain.slices = [{ sliceIndex: 0, datum: [1, 3] }];
    socket.offered.push(spread, plain);
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 2, 5000, 'both tasks to finish');
    expect(outcomesOf(socket, spread.taskId).map((o) => (o.status === 'ok' ? o.value : o.error)).sort()).toEqual([[1, 3, 'k'], [2, 5, 'k']]);
    expect(outcomesOf(socket, plain.taskId)).toMatchObject([{ status: 'ok', value: [[1, 3], 'k', null] }]);
  });

  it('reports slice errors and refused results', async () => {
    const { socket, supervisor, logged } = setup();
    socket.responders['task:results'] = (results: TaskResults) => ({
      ok: true,
      accepted: results.outcomes.filter((o) => o.sliceIndex !== 1).map((o) => o.sliceIndex),
      refused: results.outcomes.filter((o) => o.sliceIndex === 1).map((o) => ({ sliceIndex: o.sliceIndex, code: 'EDUPLICATE' })),
    });
    const task = makeTask('(x) => { if (x === 2) throw new Error("two"); return x; }', [0, 1, 2]);
    socket.offered.push(task);
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 1, 5000, 'the task to finish');
    expect(logged(/slice 2 failed: EWORKFUNCTION: two/, 'warn')).toBe(true);
    expect(logged(/2 ok, 1 errors; 2 accepted, 1 refused \(1 EDUPLICATE\)/)).toBe(true);
  });

  it('sends results again when the scheduler answers EUNAVAILABLE (busy), and counts them only once taken', async () => {
    const { socket, supervisor } = setup();
    let busy = 2;
    socket.responders['task:results'] = (results: TaskResults) =>
      busy-- > 0
        ? { ok: false, code: ErrorCode.EUNAVAILABLE, message: 'large messages in flight are over their budget; retry' }
        : { ok: true, accepted: results.outcomes.map((o) => o.sliceIndex), refused: [] };
    socket.offered.push(makeTask('(x) => (progress(1), x)', [0, 1, 2]));
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 1, 5000, 'the task to finish');
    expect(socket.sent.filter((m) => m.event === 'task:results')).toHaveLength(3);
    expect(supervisor.stats.accepted).toBe(3);
    expect(supervisor.stats.refused).toBe(0);
  });

  it('sends results in batches of at most maxOutcomesPerMessage', async () => {
    const { socket, supervisor } = setup({ sandboxes: 2, timing: { maxOutcomesPerMessage: 300 } });
    const work = '(x) => x';
    const big = makeTask(work, Array.from({ length: 1000 }, (_, i) => i));
    const small = makeTask(work, Array.from({ length: 200 }, (_, i) => 1000 + i), { jobId: big.jobId, work: undefined });
    socket.offered.push(big, small);
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 2, 10_000, 'both tasks to finish');
    const messages = socket.sentOf<TaskResults>('task:results');
    for (const message of messages) expect(message.outcomes.length).toBeLessThanOrEqual(300);
    const indexes = messages.flatMap((message) => message.outcomes.map((o) => o.sliceIndex));
    expect(new Set(indexes).size).toBe(1200);
    expect(indexes).toHaveLength(1200);
  });

  describe('messages under the scheduler\'s limits (issue 7)', () => {
    /** What the scheduler's transport and bounded handler would count: UTF-8 bytes of the JSON payload, and its values. */
    const bytesOf = (payload: unknown) => Buffer.byteLength(JSON.stringify(payload), 'utf8');

    it('splits results that together weigh more than maxMessageBytes across messages, losing none', async () => {
      const { socket, supervisor } = setup({ sandboxes: 2 });
      // Ten results of ~0.9 MB each (multi-byte characters: 300,000 of them are 900,000 bytes).
      const task = makeTask('(x) => (progress(1), "€".repeat(300000) + x)', Array.from({ length: 10 }, (_, i) => i));
      socket.offered.push(task);
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 1, 20_000, 'the task to finish');
      const messages = socket.sentOf<TaskResults>('task:results');
      expect(messages.length).toBeGreaterThan(1);
      for (const message of messages) {
        expect(bytesOf(message)).toBeLessThan(Limits.maxMessageBytes);
        expect(checkBounds(message)).toBeNull();
      }
      expect(messages.flatMap((m) => m.outcomes.map((o) => o.sliceIndex)).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(supervisor.stats).toMatchObject({ slicesOk: 10, accepted: 10 });
    });

    it('splits results of many values across messages under maxValueNodes', async () => {
      const { socket, supervisor } = setup({ sandboxes: 2 });
      // Each result is an array of 300,000 zeros (600 kB, 300,001 values): four of them are over the scheduler's value limit.
      const task = makeTask('(x) => (progress(1), new Array(300000).fill(0))', Array.from({ length: 6 }, (_, i) => i));
      socket.offered.push(task);
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 1, 20_000, 'the task to finish');
      const messages = socket.sentOf<TaskResults>('task:results');
      for (const message of messages) expect(checkBounds(message)).toBeNull();
      expect(messages.flatMap((m) => m.outcomes).length).toBe(6);
    });

    it('splits console and custom events across messages', async () => {
      const { socket, supervisor } = setup({ timing: { eventFlushMs: 200 } });
      const task = makeTask('(x) => { progress(1); work.emit("big", "€".repeat(300000)); console.log("é".repeat(60000)); return x; }', Array.from({ length: 8 }, (_, i) => i));
      socket.offered.push(task);
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 1, 20_000, 'the task to finish');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const messages = socket.sentOf<WorkerEvents>('task:events');
      expect(messages.length).toBeGreaterThan(1);
      for (const message of messages) expect(bytesOf(message)).toBeLessThan(Limits.maxMessageBytes);
      expect(messages.flatMap((m) => m.custom)).toHaveLength(8);
      expect(messages.flatMap((m) => m.console)).toHaveLength(8);
    });

    it('logs and goes on when sending events throws', async () => {
      const { socket, supervisor, logged } = setup({ timing: { eventFlushMs: 20 } });
      const emit = socket.emit.bind(socket);
      socket.emit = (event: string, payload: unknown) => {
        if (event === 'task:events') throw new RangeError('Maximum call stack size exceeded');
        return emit(event, payload);
      };
      socket.offered.push(makeTask('(x) => { progress(1); console.log("hello", x); return x; }', [0, 1, 2]));
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 1, 10_000, 'the task to finish');
      await waitUntil(() => logged(/could not send \d+ console\/custom events: Maximum call stack size exceeded/, 'warn'), 2000, 'the warning');
      expect(outcomesOf(socket)).toHaveLength(3);
    });

    it('survives a job whose work.emit() value and result are nested 20,000 deep: the result fails with ETOODEEP', async () => {
      const { socket, supervisor } = setup();
      const task = makeTask('(x) => { progress(1); let v = 0; for (let i = 0; i < 20000; i++) v = [v]; if (x === 0) work.emit("deep", v); return x === 1 ? v : "fine"; }', [0, 1, 2]);
      socket.offered.push(task);
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 1, 10_000, 'the task to finish');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const outcomes = outcomesOf(socket).sort((a, b) => a.sliceIndex - b.sliceIndex);
      expect(outcomes.map((o) => (o.status === 'ok' ? o.value : o.error.code))).toEqual([ErrorCode.EWORKFUNCTION, ErrorCode.ETOODEEP, 'fine']);
      for (const message of socket.sent) expect(checkBounds(message.payload)).toBeNull();
      expect(socket.sentOf<WorkerEvents>('task:events').flatMap((m) => m.custom)).toEqual([]);
    });
  });

  describe(splitByWeight.name, () => {
    const w = (bytes: number, nodes = 1) => ({ bytes, nodes });
    it('groups up to a count and up to the byte and value budgets, and sends an overweight item alone', () => {
      expect(splitByWeight([], 10)).toEqual([]);
      expect(splitByWeight([w(1), w(1), w(1)], 2)).toEqual([[0, 2], [2, 3]]);
      const mb = 1024 * 1024;
      expect(splitByWeight([w(mb), w(mb), w(mb), w(mb), w(mb)], 500)).toEqual([[0, 3], [3, 5]]);
      expect(splitByWeight([w(10 * mb), w(1)], 500)).toEqual([[0, 1], [1, 2]]);
      expect(splitByWeight([w(10, 600_000), w(10, 600_000), w(10, 1)], 500)).toEqual([[0, 1], [1, 3]]);
    });
  });

  it('sends console and custom events in batches per job', async () => {
    const { socket, supervisor } = setup();
    const task = makeTask('(x) => { console.log("slice", x); console.log("slice", x); work.emit("seen", { x }); return x; }', [0, 1]);
    socket.offered.push(task);
    supervisor.start();
    await waitUntil(() => socket.sentOf<WorkerEvents>('task:events').length > 0 && supervisor.stats.tasksFinished === 1, 5000, 'events');
    await new Promise((resolve) => setTimeout(resolve, 80));
    const events = socket.sentOf<WorkerEvents>('task:events');
    expect(events.every((e) => e.jobId === task.jobId)).toBe(true);
    expect(events.flatMap((e) => e.console)).toEqual([
      { sliceIndex: 0, level: 'log', message: 'slice 0' },
      { sliceIndex: 0, level: 'log', message: 'slice 0', same: 1 },
      { sliceIndex: 1, level: 'log', message: 'slice 1' },
      { sliceIndex: 1, level: 'log', message: 'slice 1', same: 1 },
    ]);
    expect(events.flatMap((e) => e.custom)).toEqual([
      { sliceIndex: 0, event: 'seen', value: { x: 0 } },
      { sliceIndex: 1, event: 'seen', value: { x: 1 } },
    ]);
  });

  it('sends a slice\'s events before its result', async () => {
    const { socket, supervisor } = setup({ timing: { eventFlushMs: 5_000 } });
    const task = makeTask('(x) => { progress(1); console.log("slice", x); return x * x; }', [0, 1, 2]);
    socket.offered.push(task);
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 1, 5000, 'the task to finish');
    const order = socket.sent.filter((m) => m.event === 'task:events' || m.event === 'task:results');
    const seenEvents = new Set<number>();
    for (const message of order) {
      if (message.event === 'task:events') for (const entry of (message.payload as WorkerEvents).console) seenEvents.add(entry.sliceIndex);
      else for (const outcome of (message.payload as TaskResults).outcomes) expect(seenEvents.has(outcome.sliceIndex)).toBe(true);
    }
    expect(seenEvents.size).toBe(3);
  });

  it('after an empty grant asks again on work:available, or after pollMs', async () => {
    const hinted = setup({ timing: { pollMs: 60_000 } });
    hinted.supervisor.start();
    await waitUntil(() => hinted.socket.sentOf('task:request').length === 1, 2000, 'the first request');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(hinted.socket.sentOf('task:request')).toHaveLength(1);
    hinted.socket.fire('work:available');
    await waitUntil(() => hinted.socket.sentOf('task:request').length === 2, 2000, 'a request after the hint');

    const polling = setup({ timing: { pollMs: 30 } });
    polling.supervisor.start();
    await waitUntil(() => polling.socket.sentOf('task:request').length >= 3, 2000, 'three polls');
  });

  it('gives back a task whose work function was neither sent nor cached, or does not match its hash', async () => {
    const { socket, supervisor, logged } = setup();
    const missing = makeTask('(x) => x', [5, 6], { work: undefined });
    const mismatched = makeTask('(x) => x', [7], { work: '(x) => x + 1' });
    socket.offered.push(missing, mismatched);
    supervisor.start();
    await waitUntil(() => socket.sentOf('task:return').length === 2, 2000, 'two returns');
    expect(socket.sentOf<TaskReturn>('task:return')).toEqual([
      { taskId: missing.taskId, jobId: missing.jobId, sliceIndexes: [5, 6] },
      { taskId: mismatched.taskId, jobId: mismatched.jobId, sliceIndexes: [7] },
    ]);
    expect(logged(/no work function for hash/, 'error')).toBe(true);
    expect(logged(/does not match its hash/, 'error')).toBe(true);
    expect(outcomesOf(socket)).toEqual([]);
  });

  describe('modules (job.requires())', () => {
    const refinerSource = "const { scale } = require('./lib/scale'); exports.refine = (x) => scale(x) + 1;";
    const scaleSource = 'exports.scale = (x) => x * 2;';
    const table: ModuleTable = {
      main: { './refiner': 'refiner.js' },
      files: [
        { id: 'refiner.js', hash: hashOf(refinerSource), requires: { './lib/scale': 'lib/scale.js' } },
        { id: 'lib/scale.js', hash: hashOf(scaleSource), requires: {} },
      ],
    };
    const work = "(x) => progress(1) && require('./refiner').refine(x)";
    const withModules = (sliceIndexes: number[], first: boolean, overrides: Partial<Task> = {}) =>
      makeTask(work, sliceIndexes, {
        modulesHash: moduleTableHashOf(table),
        ...(first ? { modules: table, moduleSources: [{ hash: hashOf(refinerSource), source: refinerSource }, { hash: hashOf(scaleSource), source: scaleSource }] } : { work: undefined }),
        ...overrides,
      });

    it('runs tasks with the module sources sent once, later tasks of the job using its cache by hash', async () => {
      const { socket, supervisor } = setup();
      const first = withModules([0, 1], true);
      const later = [withModules([2, 3], false, { jobId: first.jobId }), withModules([4], false, { jobId: first.jobId })];
      socket.offered.push(first, ...later);
      supervisor.start();
      await waitUntil(() => supervisor.stats.tasksFinished === 3, 5000, 'three tasks');
      const outcomes = outcomesOf(socket).sort((a, b) => a.sliceIndex - b.sliceIndex);
      expect(outcomes.map((outcome) => (outcome.status === 'ok' ? outcome.value : outcome.error.message))).toEqual([1, 3, 5, 7, 9]);
    });

    it('gives back a task whose modules were neither sent nor cached, or whose source does not match its hash', async () => {
      const { socket, supervisor, logged } = setup();
      const missing = withModules([5], false, { work: work });
      const tampered = withModules([6], true, { moduleSources: [{ hash: hashOf(refinerSource), source: 'exports.refine = () => 666;' }] });
      socket.offered.push(missing, tampered);
      supervisor.start();
      await waitUntil(() => socket.sentOf('task:return').length === 2, 2000, 'two returns');
      expect(socket.sentOf<TaskReturn>('task:return').map((sent) => sent.sliceIndexes)).toEqual([[5], [6]]);
      expect(logged(/no module table for hash/, 'error')).toBe(true);
      expect(logged(/a module source does not match its hash/, 'error')).toBe(true);
      expect(outcomesOf(socket)).toEqual([]);
    });
  });

  it('logs and ignores malformed messages, giving back malformed tasks it can identify', async () => {
    const { socket, supervisor, logged } = setup({ timing: { pollMs: 30 } });
    const good = makeTask('(x) => x', [1]);
    const { workHash: _dropped, ...withoutHash } = makeTask('(x) => x', [2, 3]);
    let calls = 0;
    socket.responders['task:request'] = () => {
      calls++;
      if (calls === 1) return { tasks: 'not a list' };
      if (calls === 2) return { tasks: [{ taskId: 'nonsense' }, withoutHash, good] };
      return { tasks: [] };
    };
    supervisor.start();
    await waitUntil(() => supervisor.stats.tasksFinished === 1 && socket.sentOf('task:return').length === 1, 3000, 'the good task and one return');
    socket.fire('job:stop', { jobId: 42 });
    expect(logged(/ignored a malformed task grant/, 'warn')).toBe(true);
    expect(logged(/ignored a malformed task:/, 'warn')).toBe(true);
    expect(logged(/ignored a malformed job:stop/, 'warn')).toBe(true);
    expect(socket.sentOf<TaskReturn>('task:return')[0]).toEqual({ taskId: withoutHash.taskId, jobId: withoutHash.jobId, sliceIndexes: [2, 3] });
    expect(outcomesOf(socket).map((o) => o.sliceIndex)).toEqual([1]);
  });

  it('stops a job on job:stop: its slices are cancelled and no results are sent', async () => {
    const { socket, supervisor, pool, logged } = setup({ sandboxes: 2 });
    const task = makeTask('function () { for (;;) progress(); }', [0, 1, 2, 3]);
    socket.offered.push(task);
    supervisor.start();
    await waitUntil(() => pool.pending === 4, 2000, 'the task to be running');
    await new Promise((resolve) => setTimeout(resolve, 50));
    socket.fire('job:stop', { jobId: task.jobId });
    await waitUntil(() => pool.pending === 0 && supervisor.activeTasks === 0, 2000, 'the slices to stop');
    expect(socket.sentOf('task:results')).toEqual([]);
    expect(logged(new RegExp(`job ${task.jobId} was stopped by the scheduler; dropped 4 unfinished slices`))).toBe(true);
  });

  describe('losing the scheduler (its replica drains or dies)', () => {
    /** Every outcome sent on any of `sockets`, by slice: how many times each slice's outcome was sent. */
    function sendsPerSlice(...sockets: FakeSocket[]): Map<number, number> {
      const sends = new Map<number, number>();
      for (const socket of sockets) for (const outcome of outcomesOf(socket)) sends.set(outcome.sliceIndex, (sends.get(outcome.sliceIndex) ?? 0) + 1);
      return sends;
    }

    it('keeps its tasks across a lost connection: their slices keep running and their results go on the next connection, each once', async () => {
      const { socket, supervisor, pool, logged } = setup({ timing: { handoverJitterMs: 0 } });
      const slices = Array.from({ length: 20 }, (_, i) => i);
      socket.offered.push(makeTask(slow(30), slices));
      supervisor.start();
      await waitUntil(() => outcomesOf(socket).length >= 2, 3000, 'some results');
      socket.drop('transport close');
      const droppedAt = performance.now();
      await waitUntil(() => pool.pending === 0, 3000, 'every slice to run without a connection');
      expect(logged(/disconnected from the scheduler at http:\/\/scheduler\.test \(transport close\); keeping \d+ unfinished slices for the next connection/, 'warn')).toBe(true);
      expect(socket.sent.filter((m) => m.event === 'task:results' && m.at > droppedAt)).toEqual([]);
      expect(supervisor.activeTasks).toBe(1);

      socket.connect(); // socket.io reconnects by itself with one URL
      await waitUntil(() => supervisor.activeTasks === 0, 3000, 'the task to be reported on the new connection');
      expect([...sendsPerSlice(socket).keys()].sort((a, b) => a - b)).toEqual(slices);
      // Sent again after the reconnect: only what was not acknowledged before the drop, each once.
      const after = socket.sent.filter((m) => m.event === 'task:results' && m.at > droppedAt).flatMap((m) => (m.payload as TaskResults).outcomes.map((o) => o.sliceIndex));
      expect(new Set(after).size).toBe(after.length);
      expect(after.length).toBeGreaterThan(0);
      expect(supervisor.stats.accepted).toBe(20);
      expect(logged(/connected to http:\/\/scheduler\.test as w_testworker01 after \d+ ms without a scheduler; sending what 1 tasks from before computed/)).toBe(true);
    });

    it('sends results whose acknowledgement the lost connection took with it again on the next one', async () => {
      const { socket, supervisor } = setup({ timing: { handoverJitterMs: 0 } });
      socket.responders['task:results'] = () => new Promise(() => undefined); // the scheduler never answers...
      socket.offered.push(makeTask('(x) => { progress(1); return x * 2; }', [0, 1, 2, 3]));
      supervisor.start();
      await waitUntil(() => outcomesOf(socket).length === 4, 3000, 'the results to be sent');
      socket.drop('transport close'); // ...because its connection is gone
      socket.responders['task:results'] = (results: TaskResults) => ({ ok: true, accepted: results.outcomes.map((o) => o.sliceIndex), refused: [] });
      socket.connect();
      await waitUntil(() => supervisor.activeTasks === 0, 3000, 'the results to be acknowledged');
      expect([...sendsPerSlice(socket).values()]).toEqual([2, 2, 2, 2]);
      expect(supervisor.stats.accepted).toBe(4);
      expect(outcomesOf(socket).slice(4).map((o) => (o.status === 'ok' ? o.value : null))).toEqual([0, 2, 4, 6]);
    });

    it('reconnects soon (not after reconnectDelayMs) when its only scheduler closes the connection, as a draining replica does', async () => {
      const { socket, supervisor } = setup({ timing: { handoverJitterMs: 50, reconnectDelayMs: 5000 } });
      supervisor.start();
      await waitUntil(() => socket.sentOf('task:request').length > 0, 1000, 'the connection');
      socket.drop('io server disconnect');
      const closedAt = performance.now();
      await waitUntil(() => socket.connectCalls.length === 2 && socket.connected, 2000, 'a reconnect');
      expect(socket.connectCalls[1]! - closedAt).toBeLessThan(1000);
    });

    it('with several URLs moves to the next when its replica closes the connection, and delivers the results of the slices it held there', async () => {
      const { socket: first, sockets, supervisor, logged } = setup({ schedulers: ['http://a.test', 'http://b.test'], timing: { handoverJitterMs: 0 } });
      const slices = Array.from({ length: 12 }, (_, i) => i);
      first.offered.push(makeTask(slow(30), slices));
      supervisor.start();
      await waitUntil(() => outcomesOf(first).length >= 2, 3000, 'some results through a');
      first.drop('io server disconnect');
      await waitUntil(() => sockets.get('http://b.test')?.connected === true, 2000, 'the move to b');
      const second = sockets.get('http://b.test')!;
      await waitUntil(() => supervisor.activeTasks === 0, 3000, 'every result delivered');
      expect([...sendsPerSlice(first, second).keys()].sort((a, b) => a - b)).toEqual(slices);
      // b gets what a did not acknowledge, each once; every result is counted accepted once.
      expect(outcomesOf(second).length).toBeGreaterThan(0);
      expect([...sendsPerSlice(second).values()].every((count) => count === 1)).toBe(true);
      expect(supervisor.stats.accepted).toBe(12);
      expect(first.connectCalls).toHaveLength(1); // a is not tried again while b serves
      expect(supervisor.schedulerUrl).toBe('http://b.test');
      expect(logged(/disconnected from the scheduler at http:\/\/a\.test \(it closed the connection\)/, 'warn')).toBe(true);
      expect(logged(/connected to http:\/\/b\.test as w_testworker01/)).toBe(true);
    });

    it('with several URLs moves on, without an error, when a replica refuses it because it is shutting down', async () => {
      const { socket: first, sockets, supervisor, logged } = setup({ schedulers: ['http://a.test', 'http://b.test'], timing: { handoverJitterMs: 0 } });
      first.answer = 'refused';
      supervisor.start();
      await waitUntil(() => sockets.get('http://b.test')?.connected === true, 2000, 'the move to b');
      expect(logged(/the scheduler at http:\/\/a\.test refused the connection: EUNAVAILABLE: .*shutting down.*; trying http:\/\/b\.test/, 'warn')).toBe(true);
      expect(logged(/refused/, 'error')).toBe(false);
    });

    it('with several URLs tries them round robin, backing off after each round in which none answered', async () => {
      const { socket: first, sockets, supervisor } = setup({
        schedulers: ['http://a.test', 'http://b.test'],
        answers: { 'http://a.test': 'unreachable', 'http://b.test': 'unreachable' },
        timing: { handoverJitterMs: 0, reconnectDelayMs: 100 },
      });
      supervisor.start();
      await waitUntil(() => sockets.has('http://b.test'), 1000, 'the move to b');
      const second = sockets.get('http://b.test')!;
      await waitUntil(() => first.connectCalls.length >= 3, 3000, 'three rounds');
      // a, b (at once), a (+100 ms), b (+100 ms), a (+200 ms)
      const [a1, a2, a3] = first.connectCalls as [number, number, number];
      const [b1, b2] = second.connectCalls as [number, number];
      expect(b1 - a1).toBeLessThan(90);
      expect(a2 - b1).toBeGreaterThanOrEqual(95);
      expect(b2 - a2).toBeGreaterThanOrEqual(95);
      expect(a3 - b2).toBeGreaterThanOrEqual(195);
      second.answer = 'connect';
      await waitUntil(() => second.connected, 3000, 'b to take the worker');
      expect(supervisor.schedulerUrl).toBe('http://b.test');
    });
  });

  it('on stop gives back unstarted slices, lets running ones finish and sends their results', async () => {
    const { socket, supervisor } = setup({ sandboxes: 1 });
    const task = makeTask(slow(60), [0, 1, 2, 3, 4, 5]);
    socket.offered.push(task);
    supervisor.start();
    await waitUntil(() => outcomesOf(socket).length >= 1, 3000, 'the first result');
    const requests = socket.sentOf('task:request').length;
    await supervisor.stop();

    const returned = socket.sentOf<TaskReturn>('task:return').flatMap((r) => r.sliceIndexes);
    const resulted = outcomesOf(socket).map((o) => o.sliceIndex);
    expect(returned.length).toBeGreaterThan(0);
    expect([...returned, ...resulted].sort()).toEqual([0, 1, 2, 3, 4, 5]);
    expect(outcomesOf(socket).every((o) => o.status === 'ok')).toBe(true);
    expect(socket.sentOf('task:request')).toHaveLength(requests);
    expect(socket.connected).toBe(false);
    expect(supervisor.stats.returned).toBe(returned.length);
  });

  it('on stop stops slices that outlast drainTimeoutMs and gives them back', async () => {
    const { socket, supervisor, pool, logged } = setup({ sandboxes: 2, timing: { drainTimeoutMs: 200 } });
    const task = makeTask('function () { for (;;) progress(); }', [0, 1, 2]);
    socket.offered.push(task);
    supervisor.start();
    await waitUntil(() => pool.pending === 3, 2000, 'the task to be running');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = Date.now();
    await supervisor.stop();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(socket.sentOf<TaskReturn>('task:return').flatMap((r) => r.sliceIndexes).sort()).toEqual([0, 1, 2]);
    expect(outcomesOf(socket)).toEqual([]);
    expect(pool.pending).toBe(0);
    expect(logged(/did not finish within 200 ms/, 'warn')).toBe(true);
  });
});
