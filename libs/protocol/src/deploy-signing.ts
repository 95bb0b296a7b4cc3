import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical.js';
import type { JobSpec } from './schemas.js';
import { SignedKind, signRequest, type MessageSigner } from './signing.js';

/**
 * A deploy is signed over its spec with an array input set's values replaced by their digest, so
 * that signing and verifying cost a hash of the values (native sha256), not an EIP-191 message
 * (keccak in JavaScript) as long as the values: a 2 MB input set signed over its values took the
 * scheduler ~100 MB of heap and seconds of CPU.
 */

/** The canonical JSON of an array input set's values: exactly what its digest covers and what the scheduler stores. */
export function inputValuesText(values: readonly unknown[]): string {
  return canonicalJson(values);
}

/** sha256 of the canonical JSON of the values, 0x + 64 hex digits (what the deploy signature covers instead of the values). */
export function inputValuesDigest(valuesText: string): string {
  return '0x' + createHash('sha256').update(valuesText, 'utf8').digest('hex');
}

/** An array input set as the deploy signature covers it. */
export interface SignedArrayInputSet {
  kind: 'array';
  count: number;
  sha256: string;
}

/**
 * What a deploy signature covers: the spec, its array input set (if any) as {kind, count, sha256}.
 * `digest` is inputValuesDigest of the values when the caller has it already (the scheduler hashes
 * once and reuses the text it hashed).
 */
export function deploySigningPayload(spec: JobSpec, digest?: string): JobSpec | (Omit<JobSpec, 'inputSet'> & { inputSet: SignedArrayInputSet }) {
  if (spec.inputSet.kind !== 'array') return spec;
  const sha256 = digest ?? inputValuesDigest(inputValuesText(spec.inputSet.values));
  return { ...spec, inputSet: { kind: 'array', count: spec.inputSet.values.length, sha256 } };
}

/** Signs a deploy (kind deploy) as the SDK sends it. */
export function signDeploy(signer: MessageSigner, spec: JobSpec): Promise<string> {
  return signRequest(signer, SignedKind.deploy, deploySigningPayload(spec));
}
