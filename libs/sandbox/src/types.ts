import type { ConsoleEntry, CustomEvent, JobPublic, SliceOutcome } from '@commune/protocol';

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
}

export interface SliceInput {
  sliceIndex: number;
  datum: unknown;
}

export interface SliceHooks {
  /** Exactly one per started slice (none for slices withdrawn or cancelled before they started). */
  onOutcome(jobId: string, outcome: SliceOutcome): void;
  onConsole(jobId: string, entry: ConsoleEntry): void;
  onCustom(jobId: string, event: CustomEvent): void;
}
