import { afterEach, describe, expect, it } from '@jest/globals';
import { availableParallelism } from 'node:os';
import { Limits, hashOf, type ConsoleEntry, type CustomEvent, type SliceOutcome } from '@commune/protocol';
import { SandboxPool, workHashOf, type SandboxJob, type SliceInput } from './index.js';

let jobCounter = 0;
function makeJob(work: string | ((...args: never[]) => unknown), extra: Partial<SandboxJob> = {}): SandboxJob {
  const source = typeof work === 'string' ? work : work.toString();
  jobCounter++;
  return {
    jobId: `j_test${String(jobCounter).padStart(8, '0')}`,
    workHash: workHashOf(source),
    work: source,
    arguments: [],
    public: { name: 'test job' },
    ...extra,
  };
}

function slicesOf(data: unknown[], firstIndex = 0): SliceInput[] {
  return data.map((datum, i) => ({ sliceIndex: firstIndex + i, datum }));
}

interface Collected {
  outcomes: Map<number, SliceOutcome>;
  duplicates: number;
  console: ConsoleEntry[];
  custom: CustomEvent[];
}

function collector(): Collected & { hooks: Parameters<SandboxPool['run']>[2] } {
  const collected: Collected = { outcomes: new Map(), duplicates: 0, console: [], custom: [] };
  return {
    ...collected,
    hooks: {
      onOutcome: (_jobId, outcome) => {
        if (collected.outcomes.has(outcome.sliceIndex)) collected.duplicates++;
        collected.outcomes.set(outcome.sliceIndex, outcome);
      },
      onConsole: (_jobId, entry) => collected.console.push(entry),
      onCustom: (_jobId, event) => collected.custom.push(event),
    },
    get duplicates() {
      return collected.duplicates;
    },
  };
}

async function runAll(pool: SandboxPool, job: SandboxJob, data: unknown[]): Promise<Collected> {
  const c = collector();
  await pool.run(job, slicesOf(data), c.hooks);
  return c;
}

function value(outcome: SliceOutcome | undefined): unknown {
  if (outcome?.status !== 'ok') throw new Error(`expected an ok outcome, got ${JSON.stringify(outcome)}`);
  return outcome.value;
}

function errorOf(outcome: SliceOutcome | undefined) {
  if (outcome?.status !== 'error') throw new Error(`expected an error outcome, got ${JSON.stringify(outcome)}`);
  return outcome.error;
}

/** Rejects with what it waited for when the promise does not settle in time. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function waitUntil(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe(SandboxPool.name, () => {
  let pool: SandboxPool | null = null;
  function newPool(size: number, options?: ConstructorParameters<typeof SandboxPool>[1]): SandboxPool {
    pool = new SandboxPool(size, options);
    return pool;
  }
  afterEach(async () => {
    await pool?.close();
    pool = null;
  });

  describe('results and arguments', () => {
    it('calls work(datum, ...arguments) and returns each result under its slice index', async () => {
      const p = newPool(2);
      const job = makeJob('function (x, a, b) { progress(1); return x * a + b; }', { arguments: [10, 1] });
      const c = await runAll(p, job, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect([...c.outcomes.keys()].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      for (let i = 0; i < 10; i++) expect(value(c.outcomes.get(i))).toBe(i * 10 + 1);
      expect(c.duplicates).toBe(0);
    });

    it('accepts arrow functions and strings whose completion value is a function', async () => {
      const p = newPool(1);
      const arrow = await runAll(p, makeJob('(x) => progress(1) && x + 1'), [1]);
      expect(value(arrow.outcomes.get(0))).toBe(2);
      const statements = await runAll(p, makeJob('const k = 3;\n(function (x) { return x * k; })'), [2]);
      expect(value(statements.outcomes.get(0))).toBe(6);
      const trailingComment = await runAll(p, makeJob('(x) => x // done'), [5]);
      expect(value(trailingComment.outcomes.get(0))).toBe(5);
    });

    it('passes structured data and returns JSON values, undefined as null', async () => {
      const p = newPool(1);
      const job = makeJob('function (d) { return d.kind === "none" ? undefined : { sum: d.values.reduce((a, b) => a + b, 0), nested: [d.kind, null, true] }; }');
      const c = await runAll(p, job, [{ kind: 'a', values: [1, 2, 3] }, { kind: 'none' }]);
      expect(value(c.outcomes.get(0))).toEqual({ sum: 6, nested: ['a', null, true] });
      expect(value(c.outcomes.get(1))).toBeNull();
    });

    it('spreads array datums into the arguments when spreadDatum is set', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('(i, j, k) => (progress(1), i * j + k)', { spreadDatum: true, arguments: [100] }), [[2, 3], [4, 5]]);
      expect(value(c.outcomes.get(0))).toBe(106);
      expect(value(c.outcomes.get(1))).toBe(120);
    });

    it('hashes work the same way as hashOf', () => {
      expect(workHashOf('(x) => x')).toBe(hashOf('(x) => x'));
    });
  });

  describe('async work', () => {
    it('awaits promises and thenables', async () => {
      const p = newPool(1);
      const asyncJob = makeJob('async function (x) { await null; progress(); const y = await Promise.resolve(x * 2); return y + 1; }');
      const c = await runAll(p, asyncJob, [1, 2, 3]);
      expect([1, 2, 3].map((x, i) => value(c.outcomes.get(i)))).toEqual([3, 5, 7]);
      const thenable = await runAll(p, makeJob('(x) => ({ then(resolve) { resolve(x + 0.5); } })'), [1]);
      expect(value(thenable.outcomes.get(0))).toBe(1.5);
    });

    it('reports a rejection as EWORKFUNCTION', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('async (x) => { await null; throw new RangeError("no " + x); }'), [7]);
      expect(errorOf(c.outcomes.get(0))).toMatchObject({ code: 'EWORKFUNCTION', name: 'RangeError', message: 'no 7' });
    });
  });

  describe('progress()', () => {
    it('returns true for numbers 0..1, percentages and no argument, and throws TypeError otherwise', async () => {
      const p = newPool(1);
      const work = `function () {
        const good = [0, 0.5, 1, '50%', ' 12.5 %', '100%', '0%', undefined].map((v) => progress(v));
        good.push(progress());
        const bad = [-0.1, 1.5, NaN, '50', 'abc%', '150%', null, {}, true, [0.5]].map((v) => {
          try { progress(v); return 'no error'; } catch (e) { return e instanceof TypeError ? 'TypeError' : String(e); }
        });
        return { good, bad };
      }`;
      const c = await runAll(p, makeJob(work), [null]);
      const result = value(c.outcomes.get(0)) as { good: unknown[]; bad: unknown[] };
      expect(result.good).toEqual(new Array(9).fill(true));
      expect(result.bad).toEqual(new Array(10).fill('TypeError'));
    });

    it('lets a slice that finishes quickly without calling progress() succeed', async () => {
      const p = newPool(1, { progressTimeoutMs: 300 });
      // The spec's example 5: form 3 without a progress() call.
      const c = await runAll(p, makeJob('function (i, j) { return [i, j, i * j]; }', { spreadDatum: true }), [[1, 3], [2, 5]]);
      expect(value(c.outcomes.get(0))).toEqual([1, 3, 3]);
      expect(value(c.outcomes.get(1))).toEqual([2, 5, 10]);
    });
  });

  describe('console', () => {
    it('formats arguments and folds identical consecutive messages into a same counter', async () => {
      const p = newPool(1);
      const work = `function () {
        console.log('a'); console.log('a'); console.log('a');
        console.warn('b', 1, { x: [1, 'y'] }, undefined, null, 2n);
        console.log('a');
        console.log('a');
        progress(0.5);
        console.log('a');
        console.error('c');
        console.info('i'); console.debug('d');
        console.log('last'); console.log('last');
        return true;
      }`;
      const c = await runAll(p, makeJob(work), [null]);
      expect(c.console.map(({ level, message, same }) => (same === undefined ? [level, message] : [level, message, same]))).toEqual([
        ['log', 'a'],
        ['log', 'a', 2],
        ['warn', 'b 1 {"x":[1,"y"]} undefined null 2n'],
        ['log', 'a'],
        ['log', 'a', 1], // a progress report flushes the counter
        ['log', 'a', 1],
        ['error', 'c'],
        ['info', 'i'],
        ['debug', 'd'],
        ['log', 'last'],
        ['log', 'last', 1], // the end of the slice flushes it too
      ]);
      expect(c.console.every((entry) => entry.sliceIndex === 0)).toBe(true);
    });

    it('does not fold messages across slices', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('(x) => { console.log("same"); return x; }'), [1, 2]);
      expect(c.console).toEqual([
        { sliceIndex: 0, level: 'log', message: 'same' },
        { sliceIndex: 1, level: 'log', message: 'same' },
      ]);
    });

    it('prints errors with their stack and cyclic objects without throwing', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('() => { const o = { a: 1 }; o.self = o; console.log(o); console.log(new TypeError("t")); return 1; }'), [null]);
      expect(c.console[0].message).toBe('{"a":1,"self":"[Circular]"}');
      expect(c.console[1].message).toMatch(/^TypeError: t\n\s+at /);
    });
  });

  describe('work.emit and work.job', () => {
    it('emits JSON custom events and refuses values that are not JSON', async () => {
      const p = newPool(1);
      const work = `function (x) {
        work.emit('tick', { x: x, list: [1, 2] });
        work.emit('bare');
        let refused = 'none';
        try { work.emit('bad', 1n); } catch (e) { refused = e.name; }
        let badName = 'none';
        try { work.emit('', 1); } catch (e) { badName = e.name; }
        return [refused, badName, work.job.public.name];
      }`;
      const c = await runAll(p, makeJob(work, { public: { name: 'my job' } }), [3]);
      expect(value(c.outcomes.get(0))).toEqual(['TypeError', 'TypeError', 'my job']);
      expect(c.custom).toEqual([
        { sliceIndex: 0, event: 'tick', value: { x: 3, list: [1, 2] } },
        { sliceIndex: 0, event: 'bare', value: null },
      ]);
    });
  });

  describe('globals', () => {
    it('has no Node require, process, fetch, timers or other Node globals (require is the sandbox\'s own: see sandbox-modules.spec.ts)', async () => {
      const p = newPool(1);
      const work = `() => [typeof require, typeof process, typeof fetch, typeof setTimeout, typeof setInterval, typeof setImmediate,
        typeof queueMicrotask, typeof module, typeof Buffer, typeof globalThis.global, typeof progress, typeof console.log, typeof work.emit]`;
      const c = await runAll(p, makeJob(work), [null]);
      expect(value(c.outcomes.get(0))).toEqual([
        'function', 'undefined', 'undefined', 'undefined', 'undefined', 'undefined',
        'undefined', 'undefined', 'undefined', 'undefined', 'function', 'function', 'function',
      ]);
    });

    it('keeps one job from seeing another job\'s globals in the same sandbox', async () => {
      const p = newPool(1);
      const writer = await runAll(p, makeJob('() => { globalThis.secret = 42; return typeof secret; }'), [null]);
      expect(value(writer.outcomes.get(0))).toBe('number');
      const reader = await runAll(p, makeJob('() => typeof secret'), [null]);
      expect(value(reader.outcomes.get(0))).toBe('undefined');
    });
  });

  describe('watchdog', () => {
    it('stops a slice that reports no progress with ENOPROGRESS and runs the rest of its chunk', async () => {
      const p = newPool(1, { progressTimeoutMs: 300 });
      // Enough quick slices before the stuck one for the chunk size to have grown past 1.
      const job = makeJob('function (x) { if (x === 60) { while (true) {} } return x; }');
      const data = Array.from({ length: 100 }, (_, i) => i);
      const started = Date.now();
      const c = await within(runAll(p, job, data), 5000, 'all 100 outcomes');
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
      expect(c.outcomes.size).toBe(100);
      expect(errorOf(c.outcomes.get(60)).code).toBe('ENOPROGRESS');
      for (let i = 0; i < 100; i++) if (i !== 60) expect(value(c.outcomes.get(i))).toBe(i);
      expect(c.duplicates).toBe(0);
    });

    it('stops an async slice that never settles with ENOPROGRESS', async () => {
      const p = newPool(1, { progressTimeoutMs: 200 });
      const c = await within(runAll(p, makeJob('async (x) => { if (x) await new Promise(() => {}); return x; }'), [0, 1, 0]), 5000, 'outcomes');
      expect(errorOf(c.outcomes.get(1)).code).toBe('ENOPROGRESS');
      expect(value(c.outcomes.get(2))).toBe(0);
    });

    it('stops a slice that keeps reporting progress but runs too long with ESLICETOOSLOW', async () => {
      const p = newPool(1, { progressTimeoutMs: 10_000, sliceTimeLimitMs: 300 });
      const job = makeJob('function (x) { if (x === 1) { for (;;) progress(); } return x; }');
      const c = await within(runAll(p, job, [0, 1, 2]), 5000, 'outcomes');
      expect(errorOf(c.outcomes.get(1)).code).toBe('ESLICETOOSLOW');
      expect(value(c.outcomes.get(0))).toBe(0);
      expect(value(c.outcomes.get(2))).toBe(2);
    });

    it('reports with ENOPROGRESS the last and the last determinate progress report it heard (spec noProgress)', async () => {
      const p = newPool(1, { progressTimeoutMs: 300 });
      // A determinate report, calls throttled within the report interval, then an indeterminate one, then silence.
      const job = makeJob('function () { progress("25%"); progress(0.3); progress(0.35); const t = Date.now() + 150; while (Date.now() < t) {} progress(); while (true) {} }');
      const c = await within(runAll(p, job, [0]), 5000, 'the ENOPROGRESS outcome');
      const error = errorOf(c.outcomes.get(0));
      expect(error.code).toBe('ENOPROGRESS');
      expect(error.progress).toEqual({
        elapsedMs: expect.any(Number),
        last: { timestamp: expect.any(Number), progress: null, value: null, throttledReports: 2 },
        lastUpdate: { timestamp: expect.any(Number), progress: 0.25, value: '25%', throttledReports: 0 },
      });
      expect(error.progress!.elapsedMs).toBeGreaterThanOrEqual(300);
      expect(error.progress!.last!.timestamp).toBeGreaterThanOrEqual(error.progress!.lastUpdate!.timestamp + 100);
    });

    it('reports no progress reports for a slice that never called progress()', async () => {
      const p = newPool(1, { progressTimeoutMs: 200 });
      const c = await within(runAll(p, makeJob('() => { while (true) {} }'), [0]), 5000, 'the ENOPROGRESS outcome');
      expect(errorOf(c.outcomes.get(0)).progress).toEqual({ elapsedMs: expect.any(Number), last: null, lastUpdate: null });
    });

    it('takes per-job limits over the pool options', async () => {
      const p = newPool(1);
      const job = makeJob('() => { while (true) {} }', { progressTimeoutMs: 200 });
      const c = await within(runAll(p, job, [0]), 5000, 'the ENOPROGRESS outcome');
      expect(errorOf(c.outcomes.get(0)).code).toBe('ENOPROGRESS');
    });
  });

  describe('memory limit', () => {
    it('fails the slice that exhausts its sandbox with ESANDBOXMEMORY while another sandbox keeps working', async () => {
      const p = newPool(2, { memoryMb: 16 });
      const order: string[] = [];
      // One slow slice that is running on the other sandbox when the hog is killed.
      const slow = makeJob('function (n) { const end = Date.now() + 1500; let s = 0; while (Date.now() < end) { s += n; progress(); } return n; }');
      const hog = makeJob('function (x) { if (x === "hog") { const keep = []; for (;;) keep.push(new Array(100000).fill(keep.length)); } return x; }');
      const slowCollected = collector();
      const hogCollected = collector();
      const slowRun = p.run(slow, slicesOf([7]), {
        ...slowCollected.hooks,
        onOutcome: (jobId, outcome, weight) => {
          order.push('slow');
          slowCollected.hooks.onOutcome(jobId, outcome, weight);
        },
      });
      const hogRun = p.run(hog, slicesOf(['hog', 'after']), {
        ...hogCollected.hooks,
        onOutcome: (jobId, outcome, weight) => {
          order.push(outcome.status === 'ok' ? 'hog ok' : 'hog killed');
          hogCollected.hooks.onOutcome(jobId, outcome, weight);
        },
      });
      await within(Promise.all([slowRun, hogRun]), 20_000, 'both jobs');
      expect(errorOf(hogCollected.outcomes.get(0)).code).toBe('ESANDBOXMEMORY');
      expect(value(hogCollected.outcomes.get(1))).toBe('after');
      expect(value(slowCollected.outcomes.get(0))).toBe(7);
      expect(order).toEqual(['hog killed', 'hog ok', 'slow']);
    }, 30_000);
  });

  describe('errors', () => {
    it('reports a thrown error as EWORKFUNCTION with name, message and stack', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('function work(x) {\n  throw new TypeError("bad " + x);\n}'), [5]);
      const error = errorOf(c.outcomes.get(0));
      expect(error).toMatchObject({ code: 'EWORKFUNCTION', name: 'TypeError', message: 'bad 5' });
      expect(error.stack).toMatch(/at work \(work-[0-9a-f]{8}\.js:2:9\)/);
      expect(error.stack).not.toMatch(/commune-runtime/);
    });

    it('reports thrown non-errors', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('() => { throw "just a string"; }'), [null]);
      expect(errorOf(c.outcomes.get(0))).toMatchObject({ code: 'EWORKFUNCTION', name: 'Error', message: 'just a string' });
    });

    it('fails every slice of a job whose work does not compile or is not a function', async () => {
      const p = newPool(1);
      const broken = await runAll(p, makeJob('function (x) { return x +; }'), [1, 2]);
      expect(errorOf(broken.outcomes.get(0))).toMatchObject({ code: 'EWORKFUNCTION', name: 'SyntaxError' });
      expect(errorOf(broken.outcomes.get(1))).toMatchObject({ code: 'EWORKFUNCTION', name: 'SyntaxError' });
      const notAFunction = await runAll(p, makeJob('42'), [1]);
      expect(errorOf(notAFunction.outcomes.get(0))).toMatchObject({ code: 'EWORKFUNCTION', name: 'TypeError' });
    });

    it('refuses results that are not JSON', async () => {
      const p = newPool(1);
      const c = await runAll(p, makeJob('(x) => x === 0 ? 1n : (() => 1)'), [0, 1]);
      expect(errorOf(c.outcomes.get(0)).code).toBe('EWORKFUNCTION');
      expect(errorOf(c.outcomes.get(1)).code).toBe('EWORKFUNCTION');
    });

    it('fails a result larger than maxResultBytes with ERESULTTOOBIG', async () => {
      const p = newPool(1);
      const max = Limits.maxResultBytes;
      const job = makeJob(`(x) => x === 'ascii' ? 'a'.repeat(${max}) : x === 'euro' ? '\\u20ac'.repeat(${Math.ceil(max / 3)}) : 'fits'`);
      const c = await runAll(p, job, ['ascii', 'euro', 'small']);
      expect(errorOf(c.outcomes.get(0)).code).toBe('ERESULTTOOBIG'); // caught in the sandbox: too many characters
      expect(errorOf(c.outcomes.get(1)).code).toBe('ERESULTTOOBIG'); // caught on the host: few characters, too many bytes
      expect(value(c.outcomes.get(2))).toBe('fits');
    });
  });

  describe('withdraw', () => {
    it('returns the queued slices that have not started, and the run resolves', async () => {
      const p = newPool(1);
      const job = makeJob('function (x) { const end = Date.now() + 30; while (Date.now() < end) progress(); return x; }');
      const c = collector();
      const running = p.run(job, slicesOf(Array.from({ length: 20 }, (_, i) => i)), c.hooks);
      await waitUntil(() => c.outcomes.size >= 2, 3000, 'two outcomes');
      const withdrawn = p.withdraw(job.jobId);
      await within(running, 3000, 'the run to resolve after withdraw');
      expect(withdrawn).toHaveLength(1);
      expect(withdrawn[0].job).toBe(job);
      const withdrawnIndexes = withdrawn[0].slices.map((slice) => slice.sliceIndex);
      expect(withdrawnIndexes.length).toBeGreaterThan(0);
      const done = [...c.outcomes.keys()];
      expect([...done, ...withdrawnIndexes].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      expect(p.pending).toBe(0);
    });

    it('withdraws only the given job', async () => {
      const p = newPool(1);
      const blocker = makeJob('function (x) { const end = Date.now() + 100; while (Date.now() < end) progress(); return x; }');
      const other = makeJob('(x) => x');
      const b = collector();
      const o = collector();
      const blocking = p.run(blocker, slicesOf([0]), b.hooks);
      const queued = p.run(other, slicesOf([1, 2, 3], 1), o.hooks);
      const queuedBlocker = p.run(blocker, slicesOf([4, 5], 4), b.hooks);
      expect(p.pending).toBe(6);
      const withdrawn = p.withdraw(blocker.jobId);
      expect(withdrawn.map((group) => group.slices.map((slice) => slice.sliceIndex))).toEqual([[4, 5]]);
      await within(Promise.all([blocking, queued, queuedBlocker]), 3000, 'the runs');
      expect(o.outcomes.size).toBe(3);
      expect([...b.outcomes.keys()]).toEqual([0]);
    });
  });

  describe('cancelJob', () => {
    it('drops queued slices and stops running ones without outcomes, and the pool keeps working', async () => {
      const p = newPool(2);
      const job = makeJob('function () { for (;;) progress(); }');
      const c = collector();
      const running = p.run(job, slicesOf(Array.from({ length: 10 }, (_, i) => i)), c.hooks);
      await waitUntil(() => p.pending === 10 && c.outcomes.size === 0, 1000, 'the job to start');
      await new Promise((resolve) => setTimeout(resolve, 100));
      p.cancelJob(job.jobId);
      await within(running, 3000, 'the cancelled run to resolve');
      expect(c.outcomes.size).toBe(0);
      expect(p.pending).toBe(0);
      const after = await runAll(p, makeJob('(x) => x * 2'), [1, 2, 3]);
      expect([0, 1, 2].map((i) => value(after.outcomes.get(i)))).toEqual([2, 4, 6]);
    });
  });

  describe('close', () => {
    it('resolves pending runs and refuses new ones', async () => {
      const p = newPool(1);
      const running = p.run(makeJob('function () { for (;;) progress(); }'), slicesOf([1, 2]), collector().hooks);
      await new Promise((resolve) => setTimeout(resolve, 50));
      await within(p.close(), 3000, 'close');
      await within(running, 1000, 'the run to resolve after close');
      await expect(p.run(makeJob('(x) => x'), slicesOf([1]), collector().hooks)).rejects.toThrow(/closed/);
    });
  });

  describe('throughput', () => {
    it('runs 100k trivial slices and delivers every outcome', async () => {
      const sandboxes = availableParallelism();
      const p = newPool(sandboxes);
      const job = makeJob('(x) => x + 1');
      const count = 100_000;
      let outcomes = 0;
      let ok = 0;
      const slices = slicesOf(Array.from({ length: count }, (_, i) => i));
      const started = performance.now();
      await p.run(job, slices, {
        onOutcome: (_jobId, outcome) => {
          outcomes++;
          if (outcome.status === 'ok') ok++;
        },
        onConsole: () => undefined,
        onCustom: () => undefined,
      });
      const seconds = (performance.now() - started) / 1000;
      // A measurement, not an assertion: see bench/ for comparisons.
      process.stdout.write(`sandbox throughput: ${Math.round(count / seconds)} slices/s (${count} trivial slices, ${sandboxes} sandboxes)\n`);
      expect(outcomes).toBe(count);
      expect(ok).toBe(count);
    }, 60_000);
  });
});
