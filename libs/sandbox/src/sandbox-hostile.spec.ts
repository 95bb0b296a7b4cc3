import { afterEach, describe, expect, it } from '@jest/globals';
import { ErrorCode, type ConsoleEntry, type CustomEvent, type SliceOutcome, type StateOperation } from '@commune/protocol';
import { SandboxPool, sandboxValueDepth, workHashOf, type SandboxJob, type SliceHooks, type ValueWeight } from './index.js';

/**
 * The sandbox pool facing hostile work functions (issue 7): whatever a job hands out of its
 * isolate is bounded before the host looks into it, WebAssembly memory counts against the limit,
 * and no job is charged for memory another left behind.
 */
let counter = 0;
function job(work: string, extra: Partial<SandboxJob> = {}): SandboxJob {
  counter++;
  return { jobId: `j_hostile${String(counter).padStart(6, '0')}`, workHash: workHashOf(work), work, arguments: [], public: {}, ...extra };
}

interface Seen {
  outcomes: SliceOutcome[];
  weights: ValueWeight[];
  console: ConsoleEntry[];
  custom: CustomEvent[];
  hooks: SliceHooks;
}

function seen(extra: Partial<SliceHooks> = {}): Seen {
  const s: Seen = {
    outcomes: [],
    weights: [],
    console: [],
    custom: [],
    hooks: {
      onOutcome: (_jobId, outcome, weight) => {
        s.outcomes.push(outcome);
        s.weights.push(weight);
      },
      onConsole: (_jobId, entry) => s.console.push(entry),
      onCustom: (_jobId, event) => s.custom.push(event),
      ...extra,
    },
  };
  return s;
}

async function run(pool: SandboxPool, work: string, data: unknown[] = [0], extra: Partial<SliceHooks> = {}, jobExtra: Partial<SandboxJob> = {}): Promise<Seen> {
  const s = seen(extra);
  await pool.run(job(work, jobExtra), data.map((datum, sliceIndex) => ({ sliceIndex, datum })), s.hooks);
  return s;
}

const errorCodes = (s: Seen) => s.outcomes.map((outcome) => (outcome.status === 'error' ? outcome.error.code : 'ok'));

// A wasm module with its own exported memory of one page and no maximum, and grow(pages) = memory.grow:
// (module (memory (export "mem") 1) (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))
const growModule = [0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 14, 2, 3, 109, 101, 109, 2, 0, 4, 103, 114, 111, 119, 0, 0, 10, 8, 1, 6, 0, 32, 0, 64, 0, 11];

describe('SandboxPool against hostile work functions', () => {
  let pool: SandboxPool;
  afterEach(async () => {
    await pool?.close();
  });

  describe('values handed out of the sandbox', () => {
    it('fails a result nested deeper than the limit with ETOODEEP, and passes one at the limit', async () => {
      pool = new SandboxPool(1);
      const deep = `(n) => { let v = 0; for (let i = 0; i < n; i++) v = [v]; return v; }`;
      const s = await run(pool, deep, [20_000, sandboxValueDepth + 1, sandboxValueDepth]);
      expect(errorCodes(s)).toEqual([ErrorCode.ETOODEEP, ErrorCode.ETOODEEP, 'ok']);
      const error = s.outcomes[0]!.status === 'error' ? s.outcomes[0]!.error : null;
      expect(error?.message).toBe(`the result is nested deeper than ${sandboxValueDepth} levels`);
      let value = s.outcomes[2]!.status === 'ok' ? s.outcomes[2]!.value : null;
      let depth = 0;
      while (Array.isArray(value)) {
        value = value[0];
        depth++;
      }
      expect(depth).toBe(sandboxValueDepth);
    });

    it('throws a work.emit() value nested too deep back at the work function; none reaches the host', async () => {
      pool = new SandboxPool(1);
      const s = await run(pool, `(n) => {
        let v = 0; for (let i = 0; i < n; i++) v = [v];
        try { work.emit('deep', v); return 'emitted'; } catch (e) { return e.name + ' ' + e.code + ': ' + e.message; }
      }`, [20_000, sandboxValueDepth + 1, 3]);
      expect(s.outcomes.map((o) => (o.status === 'ok' ? o.value : o.error.code))).toEqual([
        `RangeError ETOODEEP: work.emit(): the value is nested deeper than ${sandboxValueDepth} levels`,
        `RangeError ETOODEEP: work.emit(): the value is nested deeper than ${sandboxValueDepth} levels`,
        'emitted',
      ]);
      expect(s.custom).toEqual([{ sliceIndex: 2, event: 'deep', value: [[[0]]] }]);
    });

    it('a work function that tampers with the realm cannot get a non-string console message or progress value to the host', async () => {
      pool = new SandboxPool(1);
      const s = await run(pool, `() => {
        let deep = 0; for (let i = 0; i < 5000; i++) deep = [deep];
        String.prototype.slice = function () { return deep; };
        String.prototype.split = function () { return [deep]; };
        console.log('x'.repeat(70 * 1024));
        progress('50%');
        throw { name: deep, message: deep, stack: deep, code: 'ENOTLEASED' };
      }`);
      expect(errorCodes(s)).toEqual([ErrorCode.EWORKFUNCTION]);
      const error = s.outcomes[0]!.status === 'error' ? s.outcomes[0]!.error : null;
      expect(typeof error?.message).toBe('string');
      expect(typeof error?.name).toBe('string');
      for (const entry of s.console) {
        expect(typeof entry.message).toBe('string');
        expect(entry.message.length).toBeLessThanOrEqual(64 * 1024 + 100);
      }
    });

    it('hands the host at most a message worth of console and custom events per slice', async () => {
      pool = new SandboxPool(1);
      const s = await run(pool, `() => {
        const big = 'x'.repeat(1000 * 1000);
        let sent = 0;
        for (let i = 0; i < 100; i++) if (work.emit('big', big)) sent++;
        for (let i = 0; i < 1000; i++) console.log(i + 'y'.repeat(60 * 1000));
        return sent;
      }`);
      const chars = s.custom.reduce((sum, event) => sum + JSON.stringify(event.value).length, 0) + s.console.reduce((sum, entry) => sum + entry.message.length, 0);
      expect(chars).toBeLessThanOrEqual(4 * 1024 * 1024 + 2000);
      expect(s.outcomes.map((o) => (o.status === 'ok' ? o.value : o.error.code))).toEqual([s.custom.length]);
      expect(s.console.filter((entry) => entry.level === 'warn').map((entry) => entry.message)).toEqual([
        expect.stringMatching(/^\d+ more console messages of this slice were dropped/),
        expect.stringMatching(/^\d+ more work\.emit\(\) events of this slice were dropped/),
      ]);
    }, 30_000);

    it('gives each outcome a weight at least its size in a message', async () => {
      pool = new SandboxPool(1);
      const s = await run(pool, `(n) => 'é'.repeat(n)`, [1, 1000, 100_000]);
      expect(errorCodes(s)).toEqual(['ok', 'ok', 'ok']);
      s.outcomes.forEach((outcome, i) => expect(s.weights[i]!.bytes).toBeGreaterThanOrEqual(Buffer.byteLength(JSON.stringify(outcome))));
    });

    it('refuses a worker.state operation nested too deep with ETOODEEP before looking into it', async () => {
      pool = new SandboxPool(1);
      const operations: StateOperation[] = [];
      const s = await run(pool, `async () => {
        let v = 0; for (let i = 0; i < ${sandboxValueDepth + 5}; i++) v = [v];
        worker.state.deep = v;
        try { await worker.state.set(); return 'set'; } catch (e) { return e.code; }
      }`, [0], {
        onStateOperation: async (_jobId, operation) => {
          operations.push(operation);
          return { ok: true, replaced: true, version: 1, state: '{}' };
        },
      });
      expect(s.outcomes.map((o) => (o.status === 'ok' ? o.value : o.error.code))).toEqual([ErrorCode.ETOODEEP]);
      expect(operations).toEqual([]);
    });
  });

  describe('WebAssembly memory', () => {
    it('ends a slice that grows a WebAssembly.Memory past the limit with ESANDBOXMEMORY, then runs the next slice', async () => {
      pool = new SandboxPool(1, { memoryMb: 64 });
      const s = await run(pool, `(pages) => {
        const memory = new WebAssembly.Memory({ initial: 1, maximum: 16384 });
        try { memory.grow(pages); } catch (e) { return 'caught ' + e.message; }
        return memory.buffer.byteLength;
      }`, [16_383, 10]);
      expect(errorCodes(s)).toEqual([ErrorCode.ESANDBOXMEMORY, 'ok']);
      expect(s.outcomes[1]).toMatchObject({ value: 11 * 65536 });
    });

    it('counts every memory: many small ones that together go over the limit end the slice', async () => {
      pool = new SandboxPool(1, { memoryMb: 64 });
      const s = await run(pool, `() => { const kept = []; for (let i = 0; i < 20; i++) kept.push(new WebAssembly.Memory({ initial: 256, maximum: 256 })); return kept.length; }`);
      expect(errorCodes(s)).toEqual([ErrorCode.ESANDBOXMEMORY]);
    });

    it('lets memories that are no longer reachable go: a memory per slice runs for as many slices as it likes', async () => {
      pool = new SandboxPool(1, { memoryMb: 64 });
      const s = await run(pool, `(i) => { const memory = new WebAssembly.Memory({ initial: 600, maximum: 700 }); return memory.buffer.byteLength + i; }`, Array.from({ length: 40 }, (_, i) => i));
      expect(errorCodes(s).every((code) => code === 'ok')).toBe(true);
      expect(s.outcomes).toHaveLength(40);
    });

    it("caps a module's own memory, grown from inside wasm code, at the limit", async () => {
      pool = new SandboxPool(1, { memoryMb: 64 });
      const s = await run(pool, `(pages, bytes) => {
        const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(bytes)), {});
        return [instance.exports.grow(pages), instance.exports.mem.buffer.byteLength];
      }`, [16_000, 100], {}, { arguments: [growModule] });
      expect(s.outcomes.map((o) => (o.status === 'ok' ? o.value : o.error.code))).toEqual([[-1, 65536], [1, 101 * 65536]]);
    });

    it('keeps the originals out of reach, and a caught refusal still ends the slice', async () => {
      pool = new SandboxPool(1, { memoryMb: 64 });
      const s = await run(pool, `(_, bytes) => {
        const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
        // A module memory without a maximum reserves the whole limit: it can grow that far from inside wasm code.
        const module = new WebAssembly.Module(new Uint8Array(bytes));
        let refused = false;
        try { new WebAssembly.Instance(module, {}); } catch (e) { refused = e.code === 'ESANDBOXMEMORY'; }
        if (!refused) return 'an unbounded module memory was admitted beside another memory';
        return [
          Object.getPrototypeOf(memory).constructor === WebAssembly.Memory,
          Object.getPrototypeOf(module).constructor === WebAssembly.Module,
          Object.isFrozen(WebAssembly), Object.isFrozen(WebAssembly.Memory.prototype),
          typeof gc,
        ];
      }`, [0], {}, { arguments: [growModule] });
      // The refused instance ended the slice (ESANDBOXMEMORY) even though the work function caught the error.
      expect(errorCodes(s)).toEqual([ErrorCode.ESANDBOXMEMORY]);
      const t = await run(pool, `() => {
        const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
        return [
          Object.getPrototypeOf(memory).constructor === WebAssembly.Memory,
          Object.isFrozen(WebAssembly), Object.isFrozen(WebAssembly.Memory.prototype),
          typeof gc,
        ];
      }`);
      expect(t.outcomes.map((o) => (o.status === 'ok' ? o.value : o.error))).toEqual([[true, true, true, 'undefined']]);
    });
  });

  describe('memory left behind by another job', () => {
    it("does not charge a job's slices for what the previous job kept in its context", async () => {
      pool = new SandboxPool(1);
      const first = await run(pool, `() => {
        globalThis.keep = []; for (let i = 0; i < 60; i++) keep.push(new Array(128 * 1024).fill(i + 0.5));
        globalThis.bytes = new Uint8Array(40 * 1024 * 1024).fill(1);
        return keep.length;
      }`);
      expect(errorCodes(first)).toEqual(['ok']);
      const second = await run(pool, `(i) => { const a = []; for (let k = 0; k < 60; k++) a.push(new Array(128 * 1024).fill(k + 0.5)); return a.length + i; }`, [0, 1, 2]);
      expect(second.outcomes.map((o) => (o.status === 'ok' ? o.value : o.error.code))).toEqual([60, 61, 62]);
    });

    it('counts the WebAssembly memory of a job still running side by side: a context reserving much of it does not stay beside another job', async () => {
      pool = new SandboxPool(1);
      const holder = (pages: number) => job(`() => {
        if (globalThis.memory === undefined) { globalThis.memory = ${pages} > 0 ? new WebAssembly.Memory({ initial: ${pages}, maximum: ${pages} }) : null; return 'fresh'; }
        return 'kept';
      }`);
      const other = job(`() => 'other'`);
      for (const [pages, expected] of [[0, 'kept'], [1600, 'fresh']] as const) {
        const a = holder(pages);
        const results: unknown[] = [];
        const hooks = seen({ onOutcome: (_jobId, outcome) => results.push(outcome.status === 'ok' ? outcome.value : outcome.error.code) }).hooks;
        // Queued together on one sandbox: a, then the other job, then a again (a still has work when the sandbox turns away).
        await Promise.all([
          pool.run(a, [{ sliceIndex: 0, datum: 0 }], hooks),
          pool.run(other, [{ sliceIndex: 0, datum: 0 }], hooks),
          pool.run(a, [{ sliceIndex: 1, datum: 1 }], hooks),
        ]);
        // Without memory (100 MiB of wasm reserved: well over 1/8 of the limit) the context is kept.
        expect(results).toEqual(['fresh', 'other', expected]);
      }
    });

    it('gives a job a fresh context after another job ran: no globals carried over', async () => {
      pool = new SandboxPool(1);
      const a = job(`() => { globalThis.counter = (globalThis.counter || 0) + 1; return globalThis.counter; }`);
      const b = job(`() => typeof globalThis.counter`);
      const first = seen();
      await pool.run(a, [{ sliceIndex: 0, datum: 0 }, { sliceIndex: 1, datum: 1 }], first.hooks);
      const second = seen();
      await pool.run(b, [{ sliceIndex: 0, datum: 0 }], second.hooks);
      const third = seen();
      await pool.run(a, [{ sliceIndex: 2, datum: 2 }], third.hooks);
      expect(first.outcomes.map((o) => (o.status === 'ok' ? o.value : null))).toEqual([1, 2]);
      expect(second.outcomes.map((o) => (o.status === 'ok' ? o.value : null))).toEqual(['undefined']);
      // The first job's context went when the sandbox moved to the second job.
      expect(third.outcomes.map((o) => (o.status === 'ok' ? o.value : null))).toEqual([1]);
    });
  });
});
