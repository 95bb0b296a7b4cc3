import v8 from 'node:v8';
import ivm from 'isolated-vm';
import { ErrorCode, type SliceError } from '@commune/protocol';
import { sandboxRuntimeSource, type RuntimeLimits } from './runtime-source.js';
import type { SandboxJob } from './types.js';
import { compileWorkerState, prepareWorkerState, releaseWorkerState, type PreparedState, type StateMessageHandler } from './sandbox-state.js';

/** Receives the runtime's reports (see runtime-source.ts); called asynchronously on the host thread. */
export type ReportHandler = (kind: number, seq: number, position: number, a: unknown, b: unknown, c: unknown) => void;

/** A job made ready in one context of the isolate. */
export interface PreparedJob {
  readonly key: string;
  readonly jobId: string;
  readonly context: ivm.Context;
  readonly runChunk: ivm.Reference<(seq: number, datums: unknown[]) => Promise<number>>;
  /** Bytes of WebAssembly memory the context reserves (see runtime-source.ts). */
  readonly wasmReserved: ivm.Reference<() => number>;
  /** The context's worker.state (spec "Shared State"). */
  readonly state?: PreparedState;
}

export type PrepareResult = { ok: true; prepared: PreparedJob } | { ok: false; error: SliceError };

/**
 * Contexts kept per isolate (one per job, so that jobs running side by side do not rebuild theirs
 * at every turn); the least recently used one goes first. When the sandbox turns to another job,
 * the contexts of jobs that have nothing left to run here go, and if what stays holds more than
 * a little memory the whole isolate goes (see leaveOtherJobs): a job's context never outlives its
 * work on the sandbox, and no job's slice is charged for memory another job left behind.
 */
const maxContextsPerIsolate = 4;
/**
 * When the sandbox moves to another job and its isolate holds more than this share of the memory
 * limit, the isolate is replaced rather than only the other jobs' contexts released.
 */
const leftoverShareBeforeFreshIsolate = 1 / 8;
/** Compiled work functions kept per isolate, by work hash. */
const maxScriptsPerIsolate = 16;
/** Compiled modules (job.requires()) kept per isolate, by source hash. */
const maxModuleScriptsPerIsolate = 4096;

/**
 * One isolate with its caches: the compiled runtime, compiled work functions by hash, and one
 * context per job (so that jobs never see each other's globals). Disposing it (watchdog,
 * cancellation, memory limit) drops everything; the next `prepare` builds a fresh isolate.
 */
export class Sandbox {
  private isolate: ivm.Isolate | null = null;
  private runtimeScript: ivm.Script | null = null;
  private stateScript: ivm.Script | null = null;
  private readonly scripts = new Map<string, ivm.Script | SliceError>();
  private readonly moduleScripts = new Map<string, ivm.Script | SliceError>();
  private readonly contexts = new Map<string, PreparedJob>();
  /** The job the sandbox prepared last. */
  private lastJobId: string | null = null;

  constructor(
    private readonly memoryMb: number,
    private readonly limits: RuntimeLimits,
    private readonly onReport: ReportHandler,
    private readonly onState?: StateMessageHandler,
  ) {}

  /** The worker.state of each context of the job in this isolate. */
  statesOf(jobId: string): PreparedState[] {
    const states: PreparedState[] = [];
    for (const prepared of this.contexts.values()) if (prepared.state?.jobId === jobId) states.push(prepared.state);
    return states;
  }

  /** True when the isolate was disposed by V8 for going over its memory limit. */
  static isMemoryLimitError(error: unknown): boolean {
    return /memory limit/i.test(errorFields(error).message);
  }

  /**
   * Makes the job runnable in this isolate. Problems of the job itself (syntax error, top-level
   * throw, not a function, arguments that cannot be copied) come back as `{ ok: false }`;
   * a rejection means the isolate was disposed underneath (watchdog, cancel, memory).
   */
  async prepare(job: SandboxJob, hasWork: (jobId: string) => boolean = () => false): Promise<PrepareResult> {
    const key = `${job.jobId}\u0000${job.workHash}\u0000${job.modules?.hash ?? ''}`;
    if (job.jobId !== this.lastJobId) {
      this.leaveOtherJobs(job.jobId, hasWork);
      this.lastJobId = job.jobId;
    }
    const cached = this.contexts.get(key);
    if (cached) {
      if (this.contexts.size > 1) {
        this.contexts.delete(key);
        this.contexts.set(key, cached);
      }
      return { ok: true, prepared: cached };
    }
    const isolate = this.ensureIsolate();
    const context = await isolate.createContext();
    const references: Array<{ release(): void }> = [];
    try {
      const bootstrap = (await this.runtimeScript!.run(context, { reference: true })) as ivm.Reference;
      references.push(bootstrap);
      const report = new ivm.Callback(this.onReport, { ignored: true });
      const controller = (await bootstrap.apply(undefined, [report, new ivm.ExternalCopy(this.limits).copyInto()], {
        result: { reference: true },
      })) as ivm.Reference;
      references.push(controller);
      const install = (await controller.get('install', { reference: true })) as ivm.Reference;
      references.push(install);
      const runChunk = (await controller.get('runChunk', { reference: true })) as PreparedJob['runChunk'];
      const wasmReserved = (await controller.get('wasmReserved', { reference: true })) as PreparedJob['wasmReserved'];
      references.push(wasmReserved);
      // worker.state before any job code runs: a work string's statements may read it at once.
      const state = await prepareWorkerState(this.stateScript!, context, job.jobId, job.state, (...message) => this.onState?.(...message));

      if (job.modules) {
        // Before the work function's script runs: a work string's statements may require() at once.
        const failed = await this.installModules(isolate, context, controller, job.modules, references);
        if (failed) {
          runChunk.release();
          context.release();
          return { ok: false, error: failed };
        }
      }

      const script = await this.compile(isolate, job);
      if (!(script instanceof ivm.Script)) {
        runChunk.release();
        context.release();
        return { ok: false, error: script };
      }
      let work: ivm.Reference;
      try {
        work = (await script.run(context, { reference: true })) as ivm.Reference;
      } catch (error) {
        this.rethrowIfDisposed(error);
        runChunk.release();
        context.release();
        return { ok: false, error: describeHostError(error, ErrorCode.EWORKFUNCTION) };
      }
      references.push(work);
      if (work.typeof !== 'function') {
        runChunk.release();
        context.release();
        return {
          ok: false,
          error: { code: ErrorCode.EWORKFUNCTION, name: 'TypeError', message: `work is not a function (it evaluates to ${work.typeof})` },
        };
      }
      try {
        await install.apply(undefined, [
          work.derefInto(),
          new ivm.ExternalCopy(job.arguments ?? []).copyInto(),
          new ivm.ExternalCopy(job.public ?? {}).copyInto(),
          job.spreadDatum === true,
        ]);
      } catch (error) {
        this.rethrowIfDisposed(error);
        runChunk.release();
        context.release();
        return { ok: false, error: describeHostError(error, ErrorCode.EWORKFUNCTION) };
      }
      references.splice(references.indexOf(wasmReserved), 1);
      const prepared: PreparedJob = { key, jobId: job.jobId, context, runChunk, wasmReserved, state };
      this.contexts.set(key, prepared);
      while (this.contexts.size > maxContextsPerIsolate) {
        const [oldestKey, oldest] = this.contexts.entries().next().value as [string, PreparedJob];
        this.contexts.delete(oldestKey);
        releaseContext(oldest);
      }
      return { ok: true, prepared };
    } finally {
      for (const reference of references) releaseQuietly(reference);
    }
  }

  /** Whether the isolate holds a context of another job than `jobId`. */
  holdsOtherJobs(jobId: string): boolean {
    for (const prepared of this.contexts.values()) if (prepared.jobId !== jobId) return true;
    return false;
  }

  /**
   * The sandbox turns to `jobId`. The contexts of other jobs with nothing left to run here
   * (`hasWork` false: finished, stopped, or not handed to this worker now) are released. If the
   * isolate then still holds more than a small share of the memory limit (JS heap and ArrayBuffers,
   * as the isolate counts them, and the WebAssembly memory the other jobs' contexts reserve; other
   * jobs' live contexts or garbage not yet collected), the whole
   * isolate is replaced: a released context is only garbage until V8 collects it, and the next
   * job's slices must never run into a limit that another job's leftovers filled.
   */
  private leaveOtherJobs(jobId: string, hasWork: (jobId: string) => boolean): void {
    if (!this.holdsOtherJobs(jobId)) return;
    for (const [key, prepared] of this.contexts) {
      if (prepared.jobId === jobId || hasWork(prepared.jobId)) continue;
      this.contexts.delete(key);
      releaseContext(prepared);
    }
    const isolate = this.isolate;
    if (isolate === null || isolate.isDisposed) return;
    let used = Infinity;
    try {
      const heap = isolate.getHeapStatisticsSync() as ivm.HeapStatistics & { externally_allocated_size?: number };
      used = heap.used_heap_size + (heap.externally_allocated_size ?? 0);
      // WebAssembly memory is outside both: each other job's context says what its memories reserve.
      for (const prepared of this.contexts.values()) if (prepared.jobId !== jobId) used += prepared.wasmReserved.applySync(undefined, []) as number;
    } catch {
      // disposed underneath: start afresh
    }
    if (used > this.memoryMb * 1024 * 1024 * leftoverShareBeforeFreshIsolate) this.dispose();
  }

  /** Runs the datums in the sandbox; resolves with the number of outcomes the runtime reported. */
  run(prepared: PreparedJob, seq: number, datums: unknown[]): Promise<number> {
    return prepared.runChunk.apply(undefined, [seq, datums], {
      arguments: { copy: true },
      result: { promise: true, copy: true },
    }) as unknown as Promise<number>;
  }

  /** Drops the isolate (stopping whatever runs in it) and its caches. */
  dispose(): void {
    const isolate = this.isolate;
    this.isolate = null;
    this.runtimeScript = null;
    this.stateScript = null;
    this.scripts.clear();
    this.moduleScripts.clear();
    this.contexts.clear();
    if (isolate && !isolate.isDisposed) {
      try {
        isolate.dispose();
      } catch {
        // already gone
      }
    }
  }

  private ensureIsolate(): ivm.Isolate {
    if (this.isolate && !this.isolate.isDisposed) return this.isolate;
    this.dispose();
    configureV8(this.memoryMb);
    const isolate = new ivm.Isolate({ memoryLimit: this.memoryMb });
    this.runtimeScript = isolate.compileScriptSync(sandboxRuntimeSource, { filename: 'commune-runtime.js' });
    this.stateScript = compileWorkerState(isolate);
    this.isolate = isolate;
    return isolate;
  }

  private async compile(isolate: ivm.Isolate, job: SandboxJob): Promise<ivm.Script | SliceError> {
    const cached = this.scripts.get(job.workHash);
    if (cached) return cached;
    let compiled: ivm.Script | SliceError;
    const filename = `work-${job.workHash.slice(2, 10)}.js`;
    try {
      // A function expression; the newlines keep a trailing line comment from swallowing the ')'.
      compiled = await isolate.compileScript(`(\n${job.work}\n)`, { filename, lineOffset: -1 });
    } catch (expressionError) {
      this.rethrowIfDisposed(expressionError);
      try {
        // A string of statements whose completion value is the function.
        compiled = await isolate.compileScript(job.work, { filename });
      } catch (scriptError) {
        this.rethrowIfDisposed(scriptError);
        compiled = describeHostError(expressionError, ErrorCode.EWORKFUNCTION);
      }
    }
    return cacheCompiled(this.scripts, job.workHash, compiled, maxScriptsPerIsolate);
  }

  /**
   * Gives the context the job's modules: each source is compiled once per isolate (by hash) as a
   * CommonJS function wrapper and handed to the runtime with its require map. Evaluation is left
   * to require(). Returns the error of a module that does not compile.
   */
  private async installModules(
    isolate: ivm.Isolate,
    context: ivm.Context,
    controller: ivm.Reference,
    modules: NonNullable<SandboxJob['modules']>,
    references: Array<{ release(): void }>,
  ): Promise<SliceError | null> {
    const addModule = (await controller.get('addModule', { reference: true })) as ivm.Reference;
    references.push(addModule);
    const setMain = (await controller.get('setMain', { reference: true })) as ivm.Reference;
    references.push(setMain);
    for (const file of modules.files) {
      const script = await this.compileModule(isolate, file);
      if (!(script instanceof ivm.Script)) return { ...script, message: `module ${file.id}: ${script.message}` };
      let factory: ivm.Reference;
      try {
        factory = (await script.run(context, { reference: true })) as ivm.Reference;
      } catch (error) {
        this.rethrowIfDisposed(error);
        const described = describeHostError(error, ErrorCode.EWORKFUNCTION);
        return { ...described, message: `module ${file.id}: ${described.message}` };
      }
      references.push(factory);
      await addModule.apply(undefined, [file.id, factory.derefInto(), new ivm.ExternalCopy(file.requires).copyInto()]);
    }
    await setMain.apply(undefined, [new ivm.ExternalCopy(modules.main).copyInto()]);
    return null;
  }

  private async compileModule(isolate: ivm.Isolate, file: { id: string; hash: string; source: string }): Promise<ivm.Script | SliceError> {
    const cached = this.moduleScripts.get(file.hash);
    if (cached) return cached;
    let compiled: ivm.Script | SliceError;
    try {
      // Node's CommonJS wrapper; the newlines keep a trailing line comment from swallowing the '})'.
      compiled = await isolate.compileScript(`(function (exports, require, module, __filename, __dirname) {\n${file.source}\n})`, {
        filename: `module:${file.id}`,
        lineOffset: -1,
      });
    } catch (error) {
      this.rethrowIfDisposed(error);
      compiled = describeHostError(error, ErrorCode.EWORKFUNCTION);
    }
    return cacheCompiled(this.moduleScripts, file.hash, compiled, maxModuleScriptsPerIsolate);
  }

  private rethrowIfDisposed(error: unknown): void {
    if (this.isolate === null || this.isolate.isDisposed) throw error;
  }
}

/** The largest per-memory cap set so far, in 64 KiB pages. */
let wasmMemoryCapPages = 0;

/**
 * Process-wide V8 settings the sandboxes rely on, applied before an isolate is made:
 * - no WebAssembly memory grows beyond the largest sandbox memory limit (--wasm-max-mem-pages), which
 *   also stops growth from inside wasm code (memory.grow) where the runtime's wrappers cannot see it;
 * - a `gc` function in new contexts (--expose-gc) and FinalizationRegistry's cleanupSome
 *   (--harmony-weak-refs-with-cleanup-some): the runtime takes gc away from the job and, before it
 *   refuses WebAssembly memory, collects and then learns at once which memories are gone.
 * Both apply to the whole process (the host's own WebAssembly memories included).
 */
function configureV8(memoryMb: number): void {
  const pages = Math.ceil(memoryMb * 16);
  if (pages > wasmMemoryCapPages) {
    v8.setFlagsFromString(`--wasm-max-mem-pages=${pages}`);
    if (wasmMemoryCapPages === 0) {
      v8.setFlagsFromString('--expose-gc');
      v8.setFlagsFromString('--harmony-weak-refs-with-cleanup-some');
    }
    wasmMemoryCapPages = pages;
  }
}

function releaseContext(prepared: PreparedJob): void {
  releaseQuietly(prepared.runChunk);
  releaseQuietly(prepared.wasmReserved);
  releaseWorkerState(prepared.state);
  releaseQuietly(prepared.context);
}

function releaseQuietly(reference: { release(): void }): void {
  try {
    reference.release();
  } catch {
    // the isolate is gone already
  }
}

/**
 * Name, message and stack of a thrown value. Duck-typed: errors from isolated-vm are made in the
 * host's main realm, which is not the realm of `Error` under a test runner's vm context.
 */
export function errorFields(error: unknown): { name: string; message: string; stack?: string } {
  if (error !== null && typeof error === 'object') {
    const { name, message, stack } = error as { name?: unknown; message?: unknown; stack?: unknown };
    return {
      name: typeof name === 'string' && name ? name : 'Error',
      message: typeof message === 'string' ? message : String(error),
      ...(typeof stack === 'string' ? { stack } : {}),
    };
  }
  return { name: 'Error', message: String(error) };
}

/** An error that crossed the isolate boundary, without the host's half of the stack. */
export function describeHostError(error: unknown, code: string): SliceError {
  const { name, message, stack } = errorFields(error);
  const described: SliceError = { code, name, message };
  if (stack !== undefined) {
    const cut = stack.indexOf('\n    at (<isolated-vm boundary>)');
    described.stack = cut >= 0 ? stack.slice(0, cut) : stack;
  }
  return described;
}

/** Remembers a compiled script (or its compile error) by hash, releasing the oldest beyond `max`. */
function cacheCompiled(cache: Map<string, ivm.Script | SliceError>, hash: string, compiled: ivm.Script | SliceError, max: number): ivm.Script | SliceError {
  cache.set(hash, compiled);
  if (cache.size > max) {
    const oldestHash = cache.keys().next().value as string;
    const oldest = cache.get(oldestHash);
    cache.delete(oldestHash);
    if (oldest instanceof ivm.Script) releaseQuietly(oldest);
  }
  return compiled;
}
