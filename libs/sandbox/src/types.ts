import type { ConsoleEntry, CustomEvent, JobPublic, SliceOutcome, StateOperation, StateOperationReply, StateSnapshot } from '@commune/protocol';

export interface SandboxOptions {
  /** Heap limit of each sandbox, MiB (default Limits.sandboxMemoryMb, at least 8). -> ESANDBOXMEMORY */
  memoryMb?: number;
  /** A slice that reports no progress for this long is stopped (default Limits.progressTimeoutMs). -> ENOPROGRESS */
  progressTimeoutMs?: number;
  /** A slice that runs longer than this is stopped (default Limits.sliceTimeLimitMs). -> ESLICETOOSLOW */
  sliceTimeLimitMs?: number;
}

export interface SandboxJob {
  jobId: string;
  /** workHashOf(work); work functions are compiled once per sandbox per hash. */
  workHash: string;
  /** Work function source: a function expression, or statements whose completion value is a function. */
  work: string;
  /** Extra arguments: the work function is called as work(datum, ...arguments). */
  arguments: unknown[];
  /** Exposed to the work function as work.job.public. */
  public: JobPublic;
  /** Per-job override of SandboxOptions.progressTimeoutMs (a task carries its own). */
  progressTimeoutMs?: number;
  /** Per-job override of SandboxOptions.sliceTimeLimitMs (a task carries its own). */
  sliceTimeLimitMs?: number;
  /**
   * When true, a datum that is an array is spread into the call: work(...datum, ...arguments)
   * (the spec's multi-dimensional input sets, compute.for form 3). Default false.
   */
  spreadDatum?: boolean;
  /** The job's modules (spec job.requires()): what require() resolves inside the sandbox. None: require() throws for every name. */
  modules?: SandboxModules;
  /** spec "Shared State": the job's state when these slices were handed out (worker.state); absent: {} at version 0. */
  state?: StateSnapshot;
}

/** A job's CommonJS modules, with their sources (see JobModules / ModuleTable in @commune/protocol). */
export interface SandboxModules {
  /** hashOf(the module table): a job's context is cached by work hash and this. */
  hash: string;
  /** What the work function's require() resolves: specifier -> module id. */
  main: Record<string, string>;
  /** Every module: its id, its source and the hash it is compiled and cached under, and how its own require() calls resolve. */
  files: Array<{ id: string; hash: string; source: string; requires: Record<string, string> }>;
}

export interface SliceInput {
  sliceIndex: number;
  datum: unknown;
}

/**
 * What an outcome or event weighs in a message, at most: UTF-8 bytes and values (array items,
 * object members, scalars), its envelope included. A host batching them into messages adds these
 * up to stay under Limits.maxMessageBytes and Limits.maxValueNodes.
 */
export interface ValueWeight {
  bytes: number;
  nodes: number;
}

/**
 * Every value handed to these hooks has passed the sandbox's bounds: results and work.emit()
 * values are at most Limits.maxResultBytes of JSON nested at most `sandboxValueDepth` levels (a
 * deeper result fails its slice with ETOODEEP, a deeper event is dropped with a console error),
 * console messages are cut at 64 KiB, error fields are bounded strings.
 */
export interface SliceHooks {
  /** Exactly one per started slice (none for slices withdrawn or cancelled before they started). */
  onOutcome(jobId: string, outcome: SliceOutcome, weight: ValueWeight): void;
  onConsole(jobId: string, entry: ConsoleEntry, weight: ValueWeight): void;
  onCustom(jobId: string, event: CustomEvent, weight: ValueWeight): void;
  /**
   * worker.state.set / testAndSet / increment (spec "Synchronization"): ask the arbiter (the
   * scheduler, or localExec's client). Without it those methods reject with ESCHEDULER.
   */
  onStateOperation?(jobId: string, operation: StateOperation): Promise<StateOperationReply>;
  /** A sandbox added the first `change` listener to the job's worker.state: changes should reach SandboxPool.updateState. */
  onStateListening?(jobId: string): void;
}
