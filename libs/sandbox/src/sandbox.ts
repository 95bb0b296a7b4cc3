import ivm from 'isolated-vm';
import { ErrorCode, type SliceError } from '@commune/protocol';
import { sandboxRuntimeSource, type RuntimeLimits } from './runtime-source.js';
import type { SandboxJob } from './types.js';

/** Receives the runtime's reports (see runtime-source.ts); called asynchronously on the host thread. */
export type ReportHandler = (kind: number, seq: number, position: number, a: unknown, b: unknown, c: unknown) => void;

/** A job made ready in one context of the isolate. */
export interface PreparedJob {
  readonly key: string;
  readonly context: ivm.Context;
  readonly runChunk: ivm.Reference<(seq: number, datums: unknown[]) => Promise<number>>;
}

export type PrepareResult = { ok: true; prepared: PreparedJob } | { ok: false; error: SliceError };

/** Contexts kept per isolate (one per job); the least recently used one goes first. */
const maxContextsPerIsolate = 4;
/** Compiled work functions kept per isolate, by work hash. */
const maxScriptsPerIsolate = 16;

/**
 * One isolate with its caches: the compiled runtime, compiled work functions by hash, and one
 * context per job (so that jobs never see each other's globals). Disposing it (watchdog,
 * cancellation, memory limit) drops everything; the next `prepare` builds a fresh isolate.
 */
export class Sandbox {
  private isolate: ivm.Isolate | null = null;
  private runtimeScript: ivm.Script | null = null;
  private readonly scripts = new Map<string, ivm.Script | SliceError>();
  private readonly contexts = new Map<string, PreparedJob>();

  constructor(
    private readonly memoryMb: number,
    private readonly limits: RuntimeLimits,
    private readonly onReport: ReportHandler,
  ) {}

  /** True when the isolate was disposed by V8 for going over its memory limit. */
  static isMemoryLimitError(error: unknown): boolean {
    return /memory limit/i.test(errorFields(error).message);
  }

  /**
   * Makes the job runnable in this isolate. Problems of the job itself (syntax error, top-level
   * throw, not a function, arguments that cannot be copied) come back as `{ ok: false }`;
   * a rejection means the isolate was disposed underneath (watchdog, cancel, memory).
   */
  async prepare(job: SandboxJob): Promise<PrepareResult> {
    const key = `${job.jobId}\u0000${job.workHash}`;
    const cached = this.contexts.get(key);
    if (cached) {
      this.contexts.delete(key);
      this.contexts.set(key, cached);
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
      const prepared: PreparedJob = { key, context, runChunk };
      this.contexts.set(key, prepared);
      while (this.contexts.size > maxContextsPerIsolate) {
        const [oldestKey, oldest] = this.contexts.entries().next().value as [string, PreparedJob];
        this.contexts.delete(oldestKey);
        releaseQuietly(oldest.runChunk);
        releaseQuietly(oldest.context);
      }
      return { ok: true, prepared };
    } finally {
      for (const reference of references) releaseQuietly(reference);
    }
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
    this.scripts.clear();
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
    const isolate = new ivm.Isolate({ memoryLimit: this.memoryMb });
    this.runtimeScript = isolate.compileScriptSync(sandboxRuntimeSource, { filename: 'commune-runtime.js' });
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
    this.scripts.set(job.workHash, compiled);
    if (this.scripts.size > maxScriptsPerIsolate) {
      const oldestHash = this.scripts.keys().next().value as string;
      const oldest = this.scripts.get(oldestHash);
      this.scripts.delete(oldestHash);
      if (oldest instanceof ivm.Script) releaseQuietly(oldest);
    }
    return compiled;
  }

  private rethrowIfDisposed(error: unknown): void {
    if (this.isolate === null || this.isolate.isDisposed) throw error;
  }
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
