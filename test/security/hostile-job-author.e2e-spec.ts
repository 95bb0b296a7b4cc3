import { readFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init } from '@commune/client';
import { startOneSchedulerCommune, type OneSchedulerCommune, type RunningProcess } from '../support/processes.js';
import { isolatedEnvironment } from '../support/services.js';

/** Peak and current resident memory of a process, MB (from /proc). */
function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(/(\d+) kB/.exec(status.split('\n').find((line) => line.startsWith(`${name}:`)) ?? '')?.[1] ?? NaN) / 1024;
  return { rssMb: field('VmRSS'), peakMb: field('VmHWM') };
}

/**
 * The worker and its sandboxes facing hostile job authors (issue 7), with a real scheduler and a
 * real `commune-worker` process (one sandbox, so that jobs follow each other on the same isolate)
 * and jobs deployed through the SDK. Each attack ends with a named code for that job only: the
 * worker process survives and goes on computing other jobs.
 */
describe('hostile job authors (security, e2e)', () => {
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn', MAX_ATTEMPTS_PER_SLICE: '2' });
  const home = mkdtempSync(join(tmpdir(), 'commune-hostile-author-'));
  let commune: OneSchedulerCommune;
  let worker: RunningProcess;
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  beforeAll(async () => {
    commune = await startOneSchedulerCommune(env, 1, 1);
    worker = commune.workers[0]!;
    ({ compute } = await init({ scheduler: commune.scheduler.url, home }));
  }, 60_000);

  afterAll(async () => {
    await commune?.stop();
  }, 30_000);

  /** The worker is still the same live process and computes a plain job. */
  async function expectWorkerComputing(): Promise<void> {
    expect(worker.child.exitCode).toBeNull();
    expect(worker.child.signalCode).toBeNull();
    const results = await compute.for(1, 4, (i: number) => progress(1) && i * 3).exec();
    expect(Array.from(results)).toEqual([3, 6, 9, 12]);
    expect(worker.child.exitCode).toBeNull();
  }

  it('a work.emit() value nested 20,000 deep fails that job, not the worker, which keeps computing other jobs', async () => {
    const job = compute.for([1, 2], function () {
      progress(1);
      let value: unknown = 0;
      for (let i = 0; i < 20_000; i++) value = [value];
      work.emit('deep', value);
      return 1;
    });
    const custom: unknown[] = [];
    job.work.on('deep', (value: unknown) => custom.push(value));
    const sliceErrors: string[] = [];
    job.on('error', (event: { message: string }) => sliceErrors.push(event.message));
    // The emit throws in the work function (RangeError: nested deeper than ...): the slices fail, attempt after attempt.
    await expect(job.exec()).rejects.toMatchObject({ code: 'EWORKFUNCTION' });
    expect(sliceErrors.length).toBeGreaterThan(0);
    for (const message of sliceErrors) expect(message).toMatch(/work\.emit\(\): the value is nested deeper than \d+ levels/);
    expect(custom).toEqual([]);
    await expectWorkerComputing();
  }, 40_000);

  it('a work.emit() value within the depth limit still arrives', async () => {
    const job = compute.for([1], function () {
      progress(1);
      let value: unknown = 'leaf';
      for (let i = 0; i < 100; i++) value = [value];
      work.emit('nested', value);
      return 1;
    });
    let depth = -1;
    job.work.on('nested', (event: unknown) => {
      let value = event;
      depth = 0;
      while (Array.isArray(value)) {
        value = value[0];
        depth++;
      }
    });
    await expect(job.exec()).resolves.toBeDefined();
    const deadline = Date.now() + 5000;
    while (depth < 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(depth).toBe(100);
  }, 30_000);

  it('a result nested 20,000 deep fails its slice with ETOODEEP and the job after maxAttemptsPerSlice, instead of coming back forever', async () => {
    const job = compute.for([1], function () {
      progress(1);
      let value: unknown = 0;
      for (let i = 0; i < 20_000; i++) value = [value];
      return value;
    });
    const sliceErrors: string[] = [];
    job.on('error', (event: { code?: string; message: string }) => sliceErrors.push(event.code ?? event.message));
    const startedAt = Date.now();
    await expect(job.exec()).rejects.toMatchObject({ code: 'ETOODEEP' });
    // Two attempts (MAX_ATTEMPTS_PER_SLICE), each reported as a slice error, promptly: no lease had to expire.
    expect(sliceErrors.length).toBe(2);
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    await expectWorkerComputing();
  }, 40_000);

  it('a job growing a WebAssembly.Memory to 1 GiB fails with ESANDBOXMEMORY; the worker never holds it and survives', async () => {
    const job = compute.for([1], function () {
      progress(1);
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 16_384 });
      for (let pages = 1; pages < 16_384; pages += 256) {
        memory.grow(256);
        new Uint8Array(memory.buffer).fill(1, (pages - 1) * 65_536);
        progress();
      }
      return memory.buffer.byteLength;
    });
    await expect(job.exec()).rejects.toMatchObject({ code: 'ESANDBOXMEMORY' });
    // A module's own memory, grown from inside wasm code (memory.grow), is held to the same limit.
    // (module (memory (export "mem") 1) (func (export "grow") (param i32) (result i32) local.get 0 memory.grow))
    const module = [0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1, 7, 14, 2, 3, 109, 101, 109, 2, 0, 4, 103, 114, 111, 119, 0, 0, 10, 8, 1, 6, 0, 32, 0, 64, 0, 11];
    const inner = compute.for([1], function (_i: number, bytes: number[]) {
      progress(1);
      const instance = new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array(bytes)), {});
      const grown = (instance.exports.grow as (pages: number) => number)(16_383);
      return [grown, (instance.exports.mem as WasmMemory).buffer.byteLength];
    }, [module]);
    // memory.grow answers -1 (the wasm way of saying no) and the memory stays at its one page.
    expect(Array.from(await inner.exec())).toEqual([[-1, 65_536]]);
    expect(memoryOf(worker.child.pid!).peakMb).toBeLessThan(700);
    await expectWorkerComputing();
  }, 40_000);

  it('memory a job left cached in its context is not charged to the next job on the same sandbox', async () => {
    // 100 MiB held in the job's context after its slice ended: 60 MiB of JS heap, 40 MiB of ArrayBuffer.
    const first = compute.for([1], function () {
      progress(1);
      const keep: number[][] = [];
      for (let i = 0; i < 60; i++) keep.push(new Array(128 * 1024).fill(i + 0.5));
      (globalThis as unknown as { keep: unknown }).keep = keep;
      (globalThis as unknown as { bytes: unknown }).bytes = new Uint8Array(40 * 1024 * 1024).fill(1);
      return keep.length;
    });
    expect(Array.from(await first.exec())).toEqual([60]);
    // Each slice of the next job needs 60 MiB of heap for a moment: with the first job's 100 MiB
    // still counted against the 128 MiB sandbox, the first slice would fail with ESANDBOXMEMORY.
    const second = compute.for(0, 3, function (i: number) {
      progress(1);
      const scratch: number[][] = [];
      for (let k = 0; k < 60; k++) scratch.push(new Array(128 * 1024).fill(k + 0.5));
      return scratch.length + i;
    });
    const sliceErrors: string[] = [];
    second.on('error', (event: { code?: string; message: string }) => sliceErrors.push(`${event.code}: ${event.message}`));
    expect(Array.from(await second.exec())).toEqual([60, 61, 62, 63]);
    expect(sliceErrors).toEqual([]);
    await expectWorkerComputing();
  }, 60_000);
});

declare function progress(value?: number | string): boolean;
declare const work: { emit(name: string, value: unknown): boolean };
// What the work functions above use of the sandbox's WebAssembly (the test build has no DOM types).
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum?: number }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
};
interface WasmMemory {
  grow(pages: number): number;
  readonly buffer: ArrayBuffer;
}
