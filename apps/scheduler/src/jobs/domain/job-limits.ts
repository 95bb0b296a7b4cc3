import { CommuneError, ErrorCode, workBytesOf, type JobSpec } from '@commune/protocol';
import { inputSetFromDescriptor, type InputSet } from '@commune/ranges';

export interface JobLimits {
  maxWorkBytes: number;
  maxInputSetBytes: number;
  maxSlicesPerJob: number;
  maxSignatureLifetimeMs: number;
  /** Paid offers need the bank; without one only free jobs (offer 0) run. */
  bankEnabled: boolean;
}

/**
 * Checks a deploy against the named limits and returns its input set. Pure: no I/O, so the
 * rules are testable alone. `inputBytes`: an array input set's size as canonical JSON when the
 * caller measured it already (the deploy hashes that text), so it is not serialised again.
 */
export function checkJobSpec(spec: JobSpec, limits: JobLimits, now: number, inputBytes?: number): InputSet {
  if (spec.expiresAt < now) throw new CommuneError(ErrorCode.EEXPIRED, `the deploy request expired at ${new Date(spec.expiresAt).toISOString()}`);
  if (spec.expiresAt - now > limits.maxSignatureLifetimeMs) {
    throw new CommuneError(ErrorCode.EEXPIRED, `expiresAt lies more than maxSignatureLifetimeMs (${limits.maxSignatureLifetimeMs} ms) ahead`);
  }
  // spec EWORKTOOBIG: "the combined size of the work function and local modules".
  const workBytes = workBytesOf(spec.work, spec.arguments, spec.modules);
  if (workBytes > limits.maxWorkBytes) {
    const what = spec.modules ? `work function, arguments and ${spec.modules.files.length} modules` : 'work function and arguments';
    throw new CommuneError(ErrorCode.EWORKTOOBIG, `${what} are ${workBytes} bytes; maxWorkBytes is ${limits.maxWorkBytes}`);
  }
  if (Number(spec.slicePaymentOffer) !== 0 && !limits.bankEnabled) {
    throw new CommuneError(ErrorCode.ENOBANK, 'paid jobs need the bank, which this scheduler is not connected to (BANK_URL); offer 0 for free computation');
  }
  if (!/^\d+(\.\d{1,18})?$/.test(spec.slicePaymentOffer)) {
    throw new CommuneError(ErrorCode.EINVAL, `slicePaymentOffer ${spec.slicePaymentOffer} has more than 18 decimals`);
  }
  if (spec.inputSet.kind === 'array') {
    const bytes = inputBytes ?? Buffer.byteLength(JSON.stringify(spec.inputSet.values));
    if (bytes > limits.maxInputSetBytes) {
      throw new CommuneError(ErrorCode.ETOOBIG, `input set is ${bytes} bytes; maxInputSetBytes is ${limits.maxInputSetBytes}`);
    }
  }
  let inputSet: InputSet;
  try {
    inputSet = inputSetFromDescriptor(spec.inputSet);
  } catch (error) {
    if (error instanceof CommuneError) throw error;
    throw new CommuneError(ErrorCode.EINVAL, `bad input set: ${(error as Error).message}`);
  }
  if (inputSet.sliceCount > limits.maxSlicesPerJob) {
    throw new CommuneError(ErrorCode.ETOOMANYTASKS, `job has ${inputSet.sliceCount} slices; maxSlicesPerJob is ${limits.maxSlicesPerJob}`);
  }
  return inputSet;
}
