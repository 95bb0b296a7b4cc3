import { CommuneError, ErrorCode, newId, type JobPublic, type SliceOutcome, type SliceProfile } from '@commune/protocol';
import type { SandboxModules } from '@commune/sandbox';
import { isKnownCode } from './connection.js';

export interface EstimateOptions {
  work: string;
  arguments: unknown[];
  public: JobPublic;
  /** The slice's input. */
  datum: unknown;
  /** Spread the datum into work(...datum, ...arguments) (multi-range jobs). */
  spreadDatum: boolean;
  /** job.requires(): the bundled modules. */
  modules?: SandboxModules;
}

const msPerHour = 3_600_000;
const bytesPerMByte = 1_000_000;

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null');
}

/**
 * spec job.estimate(): runs one slice in a one-sandbox pool (the workers' runtime) and measures
 * it. CPU is the sandbox's wall time for the slice (no GPU is measured); bytes are the JSON sizes
 * of the input and the result. A failing slice rejects with its code (EWORKFUNCTION, ENOPROGRESS, ...).
 */
export async function estimateSlice(options: EstimateOptions): Promise<SliceProfile> {
  const { SandboxPool, workHashOf } = await import('@commune/sandbox');
  const pool = new SandboxPool(1);
  let outcome: SliceOutcome | undefined;
  try {
    await pool.run(
      {
        jobId: newId('j'),
        workHash: workHashOf(options.work),
        work: options.work,
        arguments: options.arguments,
        public: options.public,
        spreadDatum: options.spreadDatum,
        ...(options.modules ? { modules: options.modules } : {}),
      },
      [{ sliceIndex: 0, datum: options.datum }],
      {
        onOutcome: (_jobId, result) => {
          outcome = result;
        },
        onConsole: () => undefined,
        onCustom: () => undefined,
      },
    );
  } finally {
    await pool.close();
  }
  if (!outcome) throw new CommuneError(ErrorCode.EWORKFUNCTION, 'the sandbox returned no outcome for the sample slice');
  if (outcome.status === 'error') {
    const code = isKnownCode(outcome.error.code) ? outcome.error.code : ErrorCode.EWORKFUNCTION;
    throw new CommuneError(code, `the sample slice failed: ${outcome.error.message}`, { error: outcome.error });
  }
  return {
    cpuHours: outcome.elapsedMs / msPerHour,
    gpuHours: 0,
    inputMBytes: jsonBytes(options.datum) / bytesPerMByte,
    outputMBytes: jsonBytes(outcome.value) / bytesPerMByte,
  };
}
