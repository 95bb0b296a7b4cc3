import {
  decodeState, ErrorCode, isCommuneError, Limits, LocalStateArbiter, type JobPublic, type SliceError, type SliceProfile, type StateObject,
  type StateOperation, type StateOperationReply,
} from '@commune/protocol';
import type { InputSet } from '@commune/ranges';
import type { SandboxJob, SandboxModules, SandboxPool, SliceHooks, SliceInput } from '@commune/sandbox';
import type { JobEventSink, RunSnapshot } from './connection.js';

/**
 * job.localExec(): the job's slices run in a local SandboxPool (the same runtime as the Node
 * worker) instead of on the scheduler, with the scheduler's rules for failed slices (a slice is
 * retried up to maxAttemptsPerSlice times, then fails the job with its error; more than
 * maxSliceErrorsPerJob errors fail it with ETOOMANYERRORS).
 *
 * The sandbox package is imported when a local run starts, not when the SDK loads, so programs
 * that only deploy never load the sandbox runtime and its native module.
 */

export interface LocalRunOptions {
  jobId: string;
  work: string;
  arguments: unknown[];
  inputSet: InputSet;
  public: JobPublic;
  /** Sandboxes in the pool. */
  cores: number;
  sink: JobEventSink;
  /** Spread each datum into work(...datum, ...arguments): multi-range jobs (compute.for form 3). */
  spreadDatum?: boolean;
  /** The scheduler's limits to apply, where they differ from the defaults in Limits (init's `localExec`). */
  limits?: LocalExecLimits;
  /** spec "Shared State": job.state as state text when the run starts (absent: {}); the run arbitrates it. */
  initialState?: string;
  /** job.requires(): the bundled modules, as on a worker. */
  modules?: SandboxModules;
}

/** Limits a local run applies as a scheduler would (defaults: Limits). */
export interface LocalExecLimits {
  /** A slice silent this long is stopped: ENOPROGRESS. */
  progressTimeoutMs?: number;
  /** A slice running this long is stopped: ESLICETOOSLOW. */
  sliceTimeLimitMs?: number;
  /** Failures of one slice before the run fails with its error. */
  maxAttemptsPerSlice?: number;
  /** Slice failures before the run fails with ETOOMANYERRORS. */
  maxSliceErrorsPerJob?: number;
}

export interface LocalRun {
  /** Resolves with the final status (finished, failed or cancelled); never rejects. */
  readonly done: Promise<RunSnapshot>;
  cancel(): void;
  /** job.state.set / testAndSet / increment during the run: the client is the arbiter. */
  operateState?(operation: StateOperation): Promise<Extract<StateOperationReply, { ok: true }>>;
}

/** Status events at most this often; the final status always goes out. */
const statusIntervalMs = 250;
/** Slices per pool.run() call, per sandbox: large enough that the cost of a call vanishes for trivial work (the pool feeds all its sandboxes from one queue, so a large chunk idles none). */
const slicesPerCorePerChunk = 256;
/** pool.run() calls in flight: the next chunk is queued while the current one drains. */
const chunksInFlight = 2;
/** After a cancel or failure, how long to let in-flight slices settle before closing the pool. */
const settleAfterStopMs = 2_000;

export function startLocalRun(options: LocalRunOptions): LocalRun {
  const { jobId, inputSet, sink, cores } = options;
  const total = inputSet.sliceCount;
  let stopped = false;
  let cancelled = false;
  let failure: { code: string; message: string } | null = null;
  let pool: SandboxPool | undefined;
  let distributed = 0;
  let computed = 0;
  let errors = 0;
  let nextFresh = 0;
  let lastStatusAt = 0;
  const retries: number[] = [];
  const attempts = new Map<number, number>();
  /** Slices of the chunks in flight that have their outcome; emptied as each chunk completes. */
  const settled = new Set<number>();

  // meanSliceProfile, measured as the scheduler does: sandbox time and result JSON per accepted slice.
  let elapsedMsTotal = 0;
  let outputBytesTotal = 0;
  let inputBytesMean: number | undefined;
  const meanSliceProfile = (): SliceProfile | null => {
    if (computed === 0) return null;
    inputBytesMean ??= meanInputBytes(inputSet);
    return { cpuHours: elapsedMsTotal / computed / 3_600_000, gpuHours: 0, inputMBytes: inputBytesMean / 1_000_000, outputMBytes: outputBytesTotal / computed / 1_000_000 };
  };

  const snapshot = (runStatus: RunSnapshot['runStatus']): RunSnapshot => ({ runStatus, total, distributed, computed, failure, meanSliceProfile: meanSliceProfile() });

  const reportStatus = (force = false) => {
    const now = Date.now();
    if (!force && now - lastStatusAt < statusIntervalMs) return;
    lastStatusAt = now;
    sink.onStatus(snapshot('running'));
  };

  const fail = (code: string, message: string) => {
    if (stopped) return;
    failure = { code, message };
    stopped = true;
    pool?.cancelJob(jobId);
  };

  const sliceFailed = (sliceIndex: number, error: SliceError) => {
    sink.onSliceError(sliceIndex, error);
    errors++;
    const tries = (attempts.get(sliceIndex) ?? 0) + 1;
    attempts.set(sliceIndex, tries);
    const maxAttempts = options.limits?.maxAttemptsPerSlice ?? Limits.maxAttemptsPerSlice;
    const maxErrors = options.limits?.maxSliceErrorsPerJob ?? Limits.maxSliceErrorsPerJob;
    if (tries >= maxAttempts) fail(error.code, `slice ${sliceIndex} failed ${tries} times: ${error.message}`);
    else if (errors > maxErrors) fail(ErrorCode.ETOOMANYERRORS, `${errors} slices failed (the limit is ${maxErrors}); last: ${error.message}`);
    else retries.push(sliceIndex);
  };

  // spec "Synchronization" with the client as the arbiter: the same operations as the scheduler's (applyStateOperation).
  const arbiter = new LocalStateArbiter(options.initialState === undefined ? {} : (decodeState(options.initialState) as StateObject));
  let stateListened = false;
  const operateState = (operation: StateOperation, fromClient: boolean): Extract<StateOperationReply, { ok: true }> => {
    const answer = arbiter.apply(operation);
    if (answer.replaced) {
      sink.onStateChange?.(answer.version, answer.state);
      // The sandboxes get the changes the client makes when they listen (their own come back with the answer).
      if (fromClient && stateListened) pool?.updateState(jobId, answer.version, decodeState(answer.state));
    }
    return answer;
  };

  const hooks: SliceHooks = {
    async onStateOperation(_jobId, operation) {
      try {
        return operateState(operation, false);
      } catch (error) {
        return { ok: false, code: isCommuneError(error) ? error.code : ErrorCode.EINVAL, message: error instanceof Error ? error.message : String(error) };
      }
    },
    onStateListening() {
      stateListened = true;
    },
    onOutcome(outcomeJobId, outcome) {
      if (outcomeJobId !== jobId || stopped) return;
      settled.add(outcome.sliceIndex);
      if (outcome.status === 'ok') {
        computed++;
        elapsedMsTotal += outcome.elapsedMs;
        outputBytesTotal += Buffer.byteLength(JSON.stringify(outcome.value) ?? 'null');
        attempts.delete(outcome.sliceIndex);
        sink.onResults([{ sliceIndex: outcome.sliceIndex, value: outcome.value }]);
        reportStatus();
      } else sliceFailed(outcome.sliceIndex, outcome.error);
    },
    onConsole(entryJobId, entry) {
      if (entryJobId === jobId && !stopped) sink.onConsole([entry]);
    },
    onCustom(eventJobId, event) {
      if (eventJobId === jobId && !stopped) sink.onCustom([event]);
    },
  };

  const nextChunk = (size: number): SliceInput[] => {
    const chunk: SliceInput[] = [];
    while (chunk.length < size && retries.length > 0) {
      const sliceIndex = retries.shift()!;
      chunk.push({ sliceIndex, datum: inputSet.sliceDatum(sliceIndex) });
    }
    while (chunk.length < size && nextFresh < total) {
      const sliceIndex = nextFresh++;
      distributed++;
      chunk.push({ sliceIndex, datum: inputSet.sliceDatum(sliceIndex) });
    }
    return chunk;
  };

  const run = async (): Promise<RunSnapshot> => {
    const { SandboxPool, workHashOf } = await import('@commune/sandbox');
    if (stopped) return snapshot(cancelled ? 'cancelled' : 'failed');
    pool = new SandboxPool(cores, { progressTimeoutMs: options.limits?.progressTimeoutMs, sliceTimeLimitMs: options.limits?.sliceTimeLimitMs });
    const job: SandboxJob = {
      jobId,
      workHash: workHashOf(options.work),
      work: options.work,
      arguments: options.arguments,
      public: options.public,
      spreadDatum: options.spreadDatum === true,
      state: arbiter.snapshot,
      ...(options.modules ? { modules: options.modules } : {}),
    };
    const inFlight = new Set<Promise<void>>();
    try {
      const chunkSize = cores * slicesPerCorePerChunk;
      while (!stopped) {
        while (inFlight.size < chunksInFlight && !stopped) {
          const chunk = nextChunk(chunkSize);
          if (chunk.length === 0) break;
          for (const slice of chunk) settled.delete(slice.sliceIndex);
          const running: Promise<void> = pool
            .run(job, chunk, hooks)
            .then(() => {
              // A slice the pool returned without an outcome counts as a failed attempt.
              for (const slice of chunk) {
                if (!settled.delete(slice.sliceIndex) && !stopped) {
                  sliceFailed(slice.sliceIndex, { code: ErrorCode.EWORKFUNCTION, name: 'Error', message: 'the sandbox returned no outcome for this slice' });
                }
              }
            })
            .catch((error: unknown) => {
              const code = isCommuneError(error) ? error.code : ErrorCode.EWORKFUNCTION;
              fail(code, `the local sandbox pool failed: ${error instanceof Error ? error.message : String(error)}`);
            })
            .finally(() => inFlight.delete(running));
          inFlight.add(running);
          reportStatus();
        }
        if (inFlight.size === 0) break;
        await Promise.race(inFlight);
      }
      if (inFlight.size > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([Promise.allSettled(inFlight), new Promise((resolve) => (timer = setTimeout(resolve, settleAfterStopMs)))]);
        clearTimeout(timer);
      }
    } finally {
      await pool.close().catch(() => undefined);
    }
    if (cancelled) return snapshot('cancelled');
    if (failure) return snapshot('failed');
    if (computed < total) {
      failure = { code: ErrorCode.EWORKFUNCTION, message: `the local run ended with ${total - computed} of ${total} slices unfinished` };
      return snapshot('failed');
    }
    return snapshot('finished');
  };

  const done = run().catch((error: unknown): RunSnapshot => {
    failure = {
      code: isCommuneError(error) ? error.code : ErrorCode.EWORKFUNCTION,
      message: `localExec failed: ${error instanceof Error ? error.message : String(error)}`,
    };
    return snapshot(cancelled ? 'cancelled' : 'failed');
  });

  return {
    done,
    operateState: async (operation) => operateState(operation, true),
    cancel() {
      if (stopped) return;
      cancelled = true;
      stopped = true;
      pool?.cancelJob(jobId);
    },
  };
}

/** Mean JSON size of a slice's input over up to 64 slices spread across the set (as the scheduler samples it). */
function meanInputBytes(inputSet: InputSet): number {
  const total = inputSet.sliceCount;
  const count = Math.min(64, total);
  let bytes = 0;
  for (let k = 0; k < count; k++) bytes += Buffer.byteLength(JSON.stringify(inputSet.sliceDatum(Math.floor((k * total) / count))) ?? 'null');
  return count === 0 ? 0 : bytes / count;
}
