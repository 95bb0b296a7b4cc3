import { ErrorCode, Limits, type ConsoleEntry, type ConsoleLevel, type ProgressReport, type SliceError, type SliceOutcome } from '@commune/protocol';
import { RuntimeReport, type RuntimeLimits } from './runtime-source.js';
import { boundedSliceError, cutText, parseSandboxJson, sandboxValueDepth, sliceErrorSize, utf8BytesAtMost, type OutcomeSize } from './bounded.js';
import { Sandbox, errorFields, type PreparedJob } from './sandbox.js';
import type { SandboxJob, SandboxOptions, SliceHooks, SliceInput } from './types.js';
import { PoolStates } from './pool-state.js';

/** A chunk should keep its sandbox busy about this long: long enough to amortise a call into the isolate, short enough for cancel and shutdown to stay responsive. */
const targetChunkMs = 20;
/** Most slices handed to a sandbox in one call. */
const maxChunkSlices = 256;
/** A job's chunk size grows at most this many times per chunk (1, 4, 16, 64, 256). */
const chunkGrowthFactor = 4;
/** Chunk-size statistics kept for this many jobs. */
const maxJobStats = 1024;
/** close() waits this long after the last isolate is gone (see close()). */
const closeSettleMs = 10;
/** Longest wait for reports still in flight after a chunk resolved. */
const reportWaitMs = 200;

const runtimeLimits: Omit<RuntimeLimits, 'wasmMemoryPages'> = {
  maxResultBytes: Limits.maxResultBytes,
  progressReportIntervalMs: 100,
  maxConsoleEntriesPerSlice: 1000,
  maxConsoleMessageChars: 64 * 1024,
  maxCustomEventsPerSlice: 1000,
  // What one slice may hand the host in console and custom events: one message's worth. Without it,
  // 1000 events of 1 MiB each would be copied out of the isolate for every slice.
  maxEventCharsPerSlice: Limits.maxMessageBytes,
  maxValueDepth: sandboxValueDepth,
};
const consoleLevels: ReadonlySet<string> = new Set(['debug', 'info', 'log', 'warn', 'error']);
/** Longest event name of work.emit(), characters (CustomEventSchema). */
const maxEventNameChars = 200;

/** One run() call. */
interface Batch {
  readonly job: SandboxJob;
  readonly hooks: SliceHooks;
  /** Slices without an outcome that were not withdrawn or dropped yet. */
  remaining: number;
  readonly resolve: () => void;
}

interface QueueEntry {
  readonly batch: Batch;
  readonly slices: SliceInput[];
  /** First slice not yet handed to a sandbox. */
  next: number;
}

/**
 * A chunk on a sandbox. `pos` is the first slice without an outcome; it is the running slice.
 * Each attempt at the rest of the chunk (a fresh isolate after a kill) gets a new `seq`, so
 * reports from a disposed isolate are recognised and ignored.
 */
interface ChunkRun {
  readonly batch: Batch;
  readonly slices: SliceInput[];
  pos: number;
  seq: number;
  base: number;
  phase: 'preparing' | 'running' | 'killed' | 'done';
  cancelled: boolean;
  sliceStartedAt: number;
  lastProgressAt: number;
  /** The running slice's last progress report and last determinate one (spec "noProgress" progressReports). */
  lastReport: ProgressReport | null;
  lastUpdate: ProgressReport | null;
}

interface Slot {
  readonly sandbox: Sandbox;
  run: ChunkRun | null;
  execution: Promise<void> | null;
}

/**
 * A fixed number of sandboxes fed from one queue. Each sandbox is handed a chunk of slices in
 * one call and runs the loop inside the isolate, reporting each outcome back through a cheap
 * asynchronous callback. A watchdog stops slices that report no progress or run too long,
 * replaces the isolate and carries on with the rest of the chunk.
 */
export class SandboxPool {
  readonly size: number;
  private readonly memoryMb: number;
  private readonly progressTimeoutMs: number;
  private readonly sliceTimeLimitMs: number;
  private readonly watchdogIntervalMs: number;
  private readonly slots: Slot[];
  private readonly queue: QueueEntry[] = [];
  private queuedCount = 0;
  private seq = 0;
  private closed = false;
  private closing: Promise<void> | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private watchdogRunningIntervalMs = Infinity;
  private readonly chunkSizes = new Map<string, number>();
  /** worker.state of the jobs run here (spec "Shared State"). */
  private readonly states = new PoolStates(() => this.slots.map((slot) => slot.sandbox));

  constructor(size: number, options: SandboxOptions = {}) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`SandboxPool size must be a positive integer, got ${size}`);
    this.size = size;
    this.memoryMb = Math.max(8, Math.floor(options.memoryMb ?? Limits.sandboxMemoryMb));
    this.progressTimeoutMs = positive(options.progressTimeoutMs, Limits.progressTimeoutMs);
    this.sliceTimeLimitMs = positive(options.sliceTimeLimitMs, Limits.sliceTimeLimitMs);
    this.watchdogIntervalMs = Math.max(10, Math.min(250, Math.floor(Math.min(this.progressTimeoutMs, this.sliceTimeLimitMs) / 5)));
    this.slots = [];
    for (let i = 0; i < size; i++) {
      const slot: Slot = {
        sandbox: new Sandbox(
          this.memoryMb,
          { ...runtimeLimits, wasmMemoryPages: this.memoryMb * 16 },
          (kind, seq, position, a, b, c) => this.onReport(slot, kind, seq, position, a, b, c),
          (state, kind, id, payload) => this.states.onMessage(state, kind, id, payload),
        ),
        run: null,
        execution: null,
      };
      this.slots.push(slot);
    }
  }

  /** Queued + running slice count. */
  get pending(): number {
    let running = 0;
    for (const slot of this.slots) if (slot.run) running += slot.run.slices.length - slot.run.pos;
    return this.queuedCount + running;
  }

  /** Queue slices of a job; resolves when each has an outcome or was withdrawn/cancelled. */
  run(job: SandboxJob, slices: SliceInput[], hooks: SliceHooks): Promise<void> {
    if (this.closed) return Promise.reject(new Error('SandboxPool is closed'));
    if (slices.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const batch: Batch = { job, hooks, remaining: slices.length, resolve };
      this.states.remember(job, hooks);
      this.queue.push({ batch, slices: slices.slice(), next: 0 });
      this.queuedCount += slices.length;
      this.schedule();
    });
  }

  /** Remove and return queued, unstarted slices (of one job, or all), one group per run() call. */
  withdraw(jobId?: string): Array<{ job: SandboxJob; slices: SliceInput[] }> {
    const withdrawn: Array<{ job: SandboxJob; slices: SliceInput[] }> = [];
    for (let i = 0; i < this.queue.length; ) {
      const entry = this.queue[i];
      if (jobId !== undefined && entry.batch.job.jobId !== jobId) {
        i++;
        continue;
      }
      this.queue.splice(i, 1);
      const slices = entry.slices.slice(entry.next);
      this.queuedCount -= slices.length;
      withdrawn.push({ job: entry.batch.job, slices });
      this.release(entry.batch, slices.length);
    }
    return withdrawn;
  }

  /**
   * spec "Shared State": the arbiter's newer state of a job (a `state:change`, say). Each sandbox
   * context of the job takes it and calls its worker.state `change` listeners; older versions are ignored.
   */
  updateState(jobId: string, version: number, state: unknown): void {
    this.states.update(jobId, version, state);
  }

  /** Drop queued slices of the job and stop its running ones (no outcomes for them). */
  cancelJob(jobId: string): void {
    this.withdraw(jobId);
    for (const slot of this.slots) {
      const run = slot.run;
      if (run === null || run.cancelled || run.batch.job.jobId !== jobId) continue;
      this.stop(slot, run);
    }
  }

  /** Stops everything: queued slices are dropped, running ones stopped without outcomes, the isolates disposed. */
  close(): Promise<void> {
    if (this.closing) return this.closing;
    this.closed = true;
    this.withdraw();
    for (const slot of this.slots) if (slot.run) this.stop(slot, slot.run);
    this.closing = Promise.all(this.slots.map((slot) => slot.execution))
      .then(() => {
        this.stopWatchdog();
        for (const slot of this.slots) slot.sandbox.dispose();
      })
      // Leave isolated-vm's callback before resolving: a process.exit() straight from the
      // rejection of a disposed isolate's call can crash V8's teardown (seen as SIGSEGV).
      .then(() => new Promise<void>((resolve) => setTimeout(resolve, closeSettleMs)));
    return this.closing;
  }

  // ---------------------------------------------------------------- scheduling

  /** Whether slices of the job are queued or running here (its sandbox contexts are worth keeping). */
  private readonly hasWork = (jobId: string): boolean => {
    for (const entry of this.queue) if (entry.batch.job.jobId === jobId) return true;
    for (const slot of this.slots) if (slot.run !== null && slot.run.batch.job.jobId === jobId && slot.run.pos < slot.run.slices.length) return true;
    return false;
  };

  private schedule(): void {
    if (this.closed) return;
    for (const slot of this.slots) {
      if (this.queuedCount === 0) return;
      if (slot.run !== null) continue;
      const run = this.takeChunk();
      if (run === null) return;
      slot.run = run;
      const execution = this.execute(slot, run);
      slot.execution = execution;
    }
  }

  private takeChunk(): ChunkRun | null {
    const entry = this.queue[0];
    if (entry === undefined) return null;
    const jobId = entry.batch.job.jobId;
    const adaptive = this.chunkSizes.get(jobId) ?? 1;
    // Share what is left between the sandboxes rather than giving it all to the first.
    const fair = Math.max(1, Math.ceil(this.queuedCount / this.size));
    const count = Math.min(adaptive, fair, entry.slices.length - entry.next);
    const slices = entry.slices.slice(entry.next, entry.next + count);
    entry.next += count;
    this.queuedCount -= count;
    if (entry.next >= entry.slices.length) this.queue.shift();
    return {
      batch: entry.batch,
      slices,
      pos: 0,
      seq: 0,
      base: 0,
      phase: 'preparing',
      cancelled: false,
      sliceStartedAt: 0,
      lastProgressAt: 0,
      lastReport: null,
      lastUpdate: null,
    };
  }

  private async execute(slot: Slot, run: ChunkRun): Promise<void> {
    const job = run.batch.job;
    try {
      while (run.pos < run.slices.length && !run.cancelled) {
        run.seq = ++this.seq;
        run.base = run.pos;
        run.phase = 'preparing';
        const startedAt = performance.now();
        run.sliceStartedAt = startedAt;
        run.lastProgressAt = startedAt;
        run.lastReport = null;
        run.lastUpdate = null;
        this.startWatchdog(job);
        try {
          const prepared = await slot.sandbox.prepare(job, this.hasWork);
          if (run.cancelled) break;
          if ((run.phase as ChunkRun['phase']) === 'killed') continue;
          if (!prepared.ok) {
            // The job cannot run here (syntax error, not a function, ...): every slice gets the error.
            while (run.pos < run.slices.length) this.settle(run, this.errorOutcome(run, prepared.error, 0));
            break;
          }
          if (prepared.prepared.state) this.states.catchUp(prepared.prepared.state);
          run.phase = 'running';
          await this.runRest(slot, run, prepared.prepared, startedAt);
        } catch (error) {
          if (run.cancelled) break;
          if ((run.phase as ChunkRun['phase']) === 'killed') continue; // the watchdog settled the slice and disposed the isolate
          const memory = Sandbox.isMemoryLimitError(error);
          const sliceError: SliceError = memory
            ? { code: ErrorCode.ESANDBOXMEMORY, name: 'Error', message: `the slice ran out of the sandbox's ${this.memoryMb} MiB memory limit` }
            : { code: ErrorCode.EWORKFUNCTION, name: 'Error', message: `the sandbox failed: ${errorFields(error).message}` };
          this.settle(run, this.errorOutcome(run, sliceError, performance.now() - run.sliceStartedAt));
          slot.sandbox.dispose();
        }
      }
    } finally {
      run.phase = 'done';
      const dropped = run.slices.length - run.pos;
      run.pos = run.slices.length;
      slot.run = null;
      slot.execution = null;
      this.release(run.batch, dropped);
      this.schedule();
    }
  }

  /** One call into the isolate for the rest of the chunk. */
  private async runRest(slot: Slot, run: ChunkRun, prepared: PreparedJob, startedAt: number): Promise<void> {
    const datums = new Array<unknown>(run.slices.length - run.base);
    for (let i = run.base; i < run.slices.length; i++) datums[i - run.base] = run.slices[i].datum;
    const reported = await slot.sandbox.run(prepared, run.seq, datums);
    if (run.cancelled || run.phase !== 'running') return;
    // Reports travel separately from the call's result; give stragglers a moment.
    const expected = run.base + reported;
    const deadline = performance.now() + reportWaitMs;
    while (run.pos < expected && run.phase === 'running' && !run.cancelled && performance.now() < deadline) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (run.cancelled || run.phase !== 'running') return;
    const done = run.pos - run.base;
    if (done === 0) {
      // Cannot happen with a healthy runtime; make sure the loop cannot spin on the same slice.
      this.settle(run, this.errorOutcome(run, { code: ErrorCode.EWORKFUNCTION, name: 'Error', message: 'the sandbox lost the outcome of this slice' }, 0));
      return;
    }
    this.adaptChunkSize(run.batch.job.jobId, (performance.now() - startedAt) / done);
  }

  private adaptChunkSize(jobId: string, msPerSlice: number): void {
    const current = this.chunkSizes.get(jobId) ?? 1;
    const wanted = Math.floor(targetChunkMs / Math.max(msPerSlice, 0.001));
    const next = Math.max(1, Math.min(maxChunkSlices, wanted, current * chunkGrowthFactor));
    this.chunkSizes.delete(jobId);
    this.chunkSizes.set(jobId, next);
    if (this.chunkSizes.size > maxJobStats) this.chunkSizes.delete(this.chunkSizes.keys().next().value as string);
  }

  // ---------------------------------------------------------------- outcomes and reports

  /**
   * A report from the runtime. Everything in it comes out of the sandbox, where the job's code can
   * tamper with the runtime's realm: each field is checked for its type, size and nesting before
   * anything here recurses into it (a result or event value is parsed only after its JSON text
   * passed the byte and depth limits).
   */
  private onReport(slot: Slot, kind: number, seq: number, position: number, a: unknown, b: unknown, c: unknown): void {
    const run = slot.run;
    if (run === null || run.seq !== seq || run.phase !== 'running' || run.cancelled) return;
    const index = run.base + position;
    if (index !== run.pos) return;
    const sliceIndex = run.slices[index].sliceIndex;
    const { job, hooks } = run.batch;
    const elapsedMs = typeof b === 'number' && b >= 0 && Number.isFinite(b) ? b : 0;
    switch (kind) {
      case RuntimeReport.ok: {
        const parsed = parseSandboxJson(a, 'the result', runtimeLimits.maxResultBytes);
        if (parsed.ok) this.settle(run, { sliceIndex, status: 'ok', value: parsed.value, elapsedMs }, parsed.weight);
        else this.settle(run, this.errorOutcome(run, { code: parsed.code, name: parsed.code === ErrorCode.EWORKFUNCTION ? 'TypeError' : 'RangeError', message: parsed.message }, elapsedMs));
        return;
      }
      case RuntimeReport.error: {
        const error = boundedSliceError(a);
        this.settle(run, { sliceIndex, status: 'error', error, elapsedMs }, sliceErrorSize(error));
        return;
      }
      case RuntimeReport.progress: {
        run.lastProgressAt = performance.now();
        const report: ProgressReport = {
          timestamp: Math.round(run.lastProgressAt - run.sliceStartedAt),
          progress: typeof a === 'number' && a >= 0 && a <= 1 ? a : null,
          value: (typeof b === 'number' && Number.isFinite(b)) ? b : typeof b === 'string' ? b.slice(0, 100) : null,
          throttledReports: typeof c === 'number' && Number.isSafeInteger(c) && c >= 0 ? c : 0,
        };
        run.lastReport = report;
        if (report.progress !== null) run.lastUpdate = report;
        return;
      }
      case RuntimeReport.console: {
        if (typeof b !== 'string') return;
        const level = typeof a === 'string' && consoleLevels.has(a) ? (a as ConsoleLevel) : 'log';
        const entry: ConsoleEntry = { sliceIndex, level, message: cutText(b, runtimeLimits.maxConsoleMessageChars) };
        if (typeof c === 'number' && Number.isSafeInteger(c) && c > 0) entry.same = c;
        callHook(() => hooks.onConsole(job.jobId, entry, { bytes: utf8BytesAtMost(entry.message) + 64, nodes: 8 }));
        return;
      }
      case RuntimeReport.custom: {
        if (typeof a !== 'string' || a.length === 0) return;
        const name = a.slice(0, maxEventNameChars);
        const parsed = parseSandboxJson(b, 'its value', runtimeLimits.maxResultBytes);
        if (!parsed.ok) {
          // The runtime refuses such values in work.emit() itself; one that got past it is dropped here, saying so.
          const entry: ConsoleEntry = { sliceIndex, level: 'error', message: `work.emit(${JSON.stringify(name)}): the event was dropped: ${parsed.message} (${parsed.code})` };
          callHook(() => hooks.onConsole(job.jobId, entry, { bytes: utf8BytesAtMost(entry.message) + 64, nodes: 8 }));
          return;
        }
        const weight = { bytes: parsed.weight.bytes + name.length * 3, nodes: parsed.weight.nodes };
        callHook(() => hooks.onCustom(job.jobId, { sliceIndex, event: name, value: parsed.value }, weight));
        return;
      }
      case RuntimeReport.memory: {
        // The runtime refused WebAssembly memory over the limit: the slice ends here and the isolate goes.
        const what = typeof a === 'string' ? a.slice(0, 200) : 'WebAssembly memory';
        run.phase = 'killed';
        this.settle(run, this.errorOutcome(run, { code: ErrorCode.ESANDBOXMEMORY, name: 'RangeError', message: `${what}: the slice went over the sandbox's ${this.memoryMb} MiB memory limit (WebAssembly memory counts)` }, performance.now() - run.sliceStartedAt));
        slot.sandbox.dispose();
        return;
      }
    }
  }

  private errorOutcome(run: ChunkRun, error: SliceError, elapsedMs: number): SliceOutcome {
    return { sliceIndex: run.slices[run.pos].sliceIndex, status: 'error', error: { ...error }, elapsedMs: Math.max(0, Math.round(elapsedMs)) };
  }

  /** The running slice (run.pos) has its outcome. */
  private settle(run: ChunkRun, outcome: SliceOutcome, size?: OutcomeSize): void {
    run.pos++;
    const now = performance.now();
    run.sliceStartedAt = now;
    run.lastProgressAt = now;
    run.lastReport = null;
    run.lastUpdate = null;
    const { job, hooks } = run.batch;
    const weight = size ?? (outcome.status === 'error' ? sliceErrorSize(outcome.error) : { bytes: 256, nodes: 16 });
    callHook(() => hooks.onOutcome(job.jobId, outcome, weight));
    this.release(run.batch, 1);
  }

  private release(batch: Batch, count: number): void {
    if (count <= 0) return;
    batch.remaining -= count;
    if (batch.remaining === 0) batch.resolve();
  }

  private stop(slot: Slot, run: ChunkRun): void {
    run.cancelled = true;
    if (run.phase === 'preparing' || run.phase === 'running' || run.phase === 'killed') slot.sandbox.dispose();
  }

  // ---------------------------------------------------------------- watchdog

  private stopWatchdog(): void {
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
    this.watchdogRunningIntervalMs = Infinity;
  }

  /** Checks about five times per limit (a job may bring limits shorter than the pool's). */
  private startWatchdog(job: SandboxJob): void {
    const limitMs = Math.min(job.progressTimeoutMs ?? this.progressTimeoutMs, job.sliceTimeLimitMs ?? this.sliceTimeLimitMs);
    const intervalMs = Math.min(this.watchdogIntervalMs, Math.max(10, Math.floor(limitMs / 5)));
    if (this.watchdog !== null && intervalMs >= this.watchdogRunningIntervalMs) return;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = setInterval(() => this.checkSlots(), intervalMs);
    this.watchdogRunningIntervalMs = intervalMs;
  }

  private checkSlots(): void {
    const now = performance.now();
    let busy = false;
    for (const slot of this.slots) {
      const run = slot.run;
      if (run === null) continue;
      busy = true;
      if (run.cancelled || (run.phase !== 'preparing' && run.phase !== 'running') || run.pos >= run.slices.length) continue;
      const job = run.batch.job;
      const sliceLimitMs = job.sliceTimeLimitMs ?? this.sliceTimeLimitMs;
      const progressLimitMs = job.progressTimeoutMs ?? this.progressTimeoutMs;
      const runningMs = now - run.sliceStartedAt;
      const silentMs = now - run.lastProgressAt;
      let error: SliceError | null = null;
      if (runningMs > sliceLimitMs) {
        error = { code: ErrorCode.ESLICETOOSLOW, name: 'Error', message: `the slice ran longer than ${sliceLimitMs} ms` };
      } else if (silentMs > progressLimitMs) {
        error = {
          code: ErrorCode.ENOPROGRESS,
          name: 'Error',
          message: `the slice reported no progress for ${progressLimitMs} ms`,
          progress: { elapsedMs: Math.round(runningMs), last: run.lastReport, lastUpdate: run.lastUpdate },
        };
      }
      if (error === null) continue;
      run.phase = 'killed';
      this.settle(run, this.errorOutcome(run, error, runningMs));
      slot.sandbox.dispose();
    }
    if (!busy) this.stopWatchdog();
  }
}

function positive(value: number | undefined, fallback: number): number {
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

/** A hook that throws is a bug in the caller: surface it without corrupting the pool's accounting. */
function callHook(call: () => void): void {
  try {
    call();
  } catch (error) {
    setImmediate(() => {
      throw error;
    });
  }
}
