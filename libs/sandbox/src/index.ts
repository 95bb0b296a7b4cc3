/**
 * @commune/sandbox: the work-function runtime shared by the standalone worker, the SDK's
 * localExec and (through `sandboxRuntimeSource`) the browser worker.
 */
import { hashOf } from '@commune/protocol';

export { SandboxPool } from './sandbox-pool.js';
export type { SandboxOptions, SandboxJob, SandboxModules, SliceInput, SliceHooks, ValueWeight } from './types.js';
export { sandboxValueDepth, valueEnvelopeDepth, jsonNestingExceeds } from './bounded.js';
export { sandboxRuntimeSource, RuntimeReport, type RuntimeReportKind, type RuntimeLimits } from './runtime-source.js';
export { workerStateSource, WorkerStateMessage } from './worker-state-source.js';

/** The hash a work function is cached under: hashOf from @commune/protocol applied to the source string. */
export function workHashOf(source: string): string {
  return hashOf(source);
}
