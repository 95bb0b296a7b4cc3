import { checkBounds, decodeState, encodeState, ErrorCode, isCommuneError, Limits, StateOperationSchema, type StateOperationReply, type ValueBounds } from '@commune/protocol';
import { sandboxValueDepth } from './bounded.js';
import type { Sandbox } from './sandbox.js';
import { settleWorkerState, updateWorkerState, type PreparedState } from './sandbox-state.js';
import type { SandboxJob, SliceHooks } from './types.js';
import { WorkerStateMessage } from './worker-state-source.js';

/** Jobs whose hooks and latest state a pool remembers. */
const maxJobs = 1024;
/**
 * What a worker.state operation from the sandbox may hold before it is looked at: the state it
 * sets can be at most Limits.maxStateBytes once encoded, so no more values or characters than that.
 */
const operationBounds: ValueBounds = { maxDepth: sandboxValueDepth, maxNodes: Limits.maxStateBytes + 16, maxStringChars: Limits.maxStateBytes + 1024 };

/**
 * A SandboxPool's side of shared state: routes worker.state's operations to the arbiter (the
 * hooks of the job's latest run() call), hands every newer state to each context of the job, and
 * says once per job when a sandbox starts listening for `change`.
 */
export class PoolStates {
  private readonly hooks = new Map<string, SliceHooks>();
  private readonly latest = new Map<string, { version: number; value: unknown }>();
  private readonly listening = new Set<string>();

  constructor(private readonly sandboxes: () => Sandbox[]) {}

  /** A run() call: its hooks answer the job's state operations from now on. */
  remember(job: SandboxJob, hooks: SliceHooks): void {
    remember(this.hooks, job.jobId, hooks);
    if (job.state && job.state.version > (this.latest.get(job.jobId)?.version ?? -1)) {
      remember(this.latest, job.jobId, { version: job.state.version, value: decodeState(job.state.state) });
    }
  }

  /** A newer state of the job (from the arbiter): every context of the job gets it. */
  update(jobId: string, version: number, value: unknown): void {
    if (version <= (this.latest.get(jobId)?.version ?? -1)) {
      // Contexts made since may still hold an older one.
      const known = this.latest.get(jobId)!;
      for (const sandbox of this.sandboxes()) for (const state of sandbox.statesOf(jobId)) updateWorkerState(state, known.version, known.value);
      return;
    }
    remember(this.latest, jobId, { version, value });
    for (const sandbox of this.sandboxes()) for (const state of sandbox.statesOf(jobId)) updateWorkerState(state, version, value);
  }

  /** A context about to run: give it the newest state known, if it holds an older one. */
  catchUp(state: PreparedState): void {
    const known = this.latest.get(state.jobId);
    if (known && known.version > state.version) updateWorkerState(state, known.version, known.value);
  }

  forget(jobId: string): void {
    this.hooks.delete(jobId);
    this.latest.delete(jobId);
    this.listening.delete(jobId);
  }

  onMessage(state: PreparedState, kind: number, id: number, payload: unknown): void {
    const jobId = state.jobId;
    const hooks = this.hooks.get(jobId);
    if (kind === WorkerStateMessage.listening) {
      if (this.listening.has(jobId)) return;
      this.listening.add(jobId);
      hooks?.onStateListening?.(jobId);
      return;
    }
    if (kind !== WorkerStateMessage.operation) return;
    const fail = (code: string, message: string) => settleWorkerState(state, id, false, { code, message });
    const problem = checkBounds(payload, operationBounds);
    if (problem === 'depth') {
      fail(ErrorCode.ETOODEEP, `the state operation is nested deeper than ${sandboxValueDepth} levels`);
      return;
    }
    if (problem !== null) {
      fail(ErrorCode.ESTATETOOBIG, `the state operation is larger than the ${Limits.maxStateBytes}-byte limit of a job's state`);
      return;
    }
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
      fail(ErrorCode.EINVAL, 'the state operation is not an object');
      return;
    }
    let operation;
    try {
      const raw = payload as Record<string, unknown>;
      operation = StateOperationSchema.parse(raw.kind === 'set' ? { ...raw, state: encodeState(raw.state) } : raw);
    } catch (error) {
      fail(ErrorCode.EINVAL, `the state operation is not valid: ${isCommuneError(error) ? error.message : ((error as Error).message ?? String(error))}`);
      return;
    }
    const arbiter = hooks?.onStateOperation;
    if (!arbiter) {
      fail(ErrorCode.ESCHEDULER, 'nothing arbitrates the state of this job here');
      return;
    }
    const test = operation.kind === 'set' && operation.test;
    arbiter(jobId, operation).then(
      (reply: StateOperationReply) => {
        if (!reply.ok) {
          fail(reply.code, reply.message);
          return;
        }
        this.update(jobId, reply.version, decodeState(reply.state));
        settleWorkerState(state, id, true, test ? (reply.replaced && reply.previous !== undefined ? decodeState(reply.previous) : false) : null);
      },
      (error: unknown) => fail(isCommuneError(error) ? error.code : ErrorCode.ESCHEDULER, (error as Error)?.message ?? String(error)),
    );
  }
}

function remember<T>(map: Map<string, T>, key: string, value: T): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > maxJobs) map.delete(map.keys().next().value as string);
}
