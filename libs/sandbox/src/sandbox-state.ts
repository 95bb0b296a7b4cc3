import ivm from 'isolated-vm';
import { decodeState, type StateSnapshot } from '@commune/protocol';
import { workerStateSource } from './worker-state-source.js';

/** worker.state in one job context (see worker-state-source.ts). */
export interface PreparedState {
  readonly jobId: string;
  /** The version the context's worker.state holds. */
  version: number;
  readonly update: ivm.Reference;
  readonly settle: ivm.Reference;
}

/** Receives worker.state's messages (WorkerStateMessage), asynchronously on the host thread. */
export type StateMessageHandler = (state: PreparedState, kind: number, id: number, payload: unknown) => void;

export function compileWorkerState(isolate: ivm.Isolate): ivm.Script {
  return isolate.compileScriptSync(workerStateSource, { filename: 'commune-worker-state.js' });
}

/** Defines `worker.state` in the context with the job's state (`initial`; {} at version 0 when absent). */
export async function prepareWorkerState(
  script: ivm.Script,
  context: ivm.Context,
  jobId: string,
  initial: StateSnapshot | undefined,
  onMessage: StateMessageHandler,
): Promise<PreparedState> {
  const setup = (await script.run(context, { reference: true })) as ivm.Reference;
  try {
    let prepared: PreparedState | undefined;
    const send = new ivm.Callback((kind: number, id: number, payload: unknown) => {
      if (prepared) onMessage(prepared, kind, id, payload);
    }, { ignored: true });
    const version = initial?.version ?? 0;
    const value = initial ? decodeState(initial.state) : {};
    const controller = (await setup.apply(undefined, [send, version, new ivm.ExternalCopy(value).copyInto()], { result: { reference: true } })) as ivm.Reference;
    try {
      const update = (await controller.get('update', { reference: true })) as ivm.Reference;
      const settle = (await controller.get('settle', { reference: true })) as ivm.Reference;
      prepared = { jobId, version, update, settle };
      return prepared;
    } finally {
      controller.release();
    }
  } finally {
    setup.release();
  }
}

/** Hands a newer state to the context (its `change` listeners run); false when it holds that version already. */
export function updateWorkerState(state: PreparedState, version: number, value: unknown): boolean {
  if (!(version > state.version)) return false;
  state.version = version;
  state.update.apply(undefined, [version, new ivm.ExternalCopy(value).copyInto()]).catch(() => undefined);
  return true;
}

/** Settles a worker.state method's Promise in the context. */
export function settleWorkerState(state: PreparedState, id: number, ok: boolean, value: unknown): void {
  state.settle.apply(undefined, [id, ok, new ivm.ExternalCopy(value ?? null).copyInto()]).catch(() => undefined);
}

export function releaseWorkerState(state: PreparedState | undefined): void {
  if (!state) return;
  for (const reference of [state.update, state.settle]) {
    try {
      reference.release();
    } catch {
      // the isolate is gone already
    }
  }
}
