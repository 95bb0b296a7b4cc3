import { z } from 'zod';
import { hashOf } from './canonical.js';

/**
 * Compute groups (DESIGN.md "compute groups"; the DCP worker's "the worker and the job must be
 * in the same Compute Group"): a named set of workers and jobs. A group is created by an account
 * with a join key (its public name) and the hash of a join secret; jobs and workers join it by
 * presenting the key with the secret (or with its hash, which DCP also accepts). The scheduler
 * stores only the hash, never the secret.
 *
 * A job with no compute groups runs in the public group; a worker is in the public group unless
 * it leaves it (`publicGroup: false`), so by default every worker runs every public job.
 * (This file has no imports from schemas.ts, which uses it: no module cycle.)
 */
const JoinHashSchema = z.string().regex(/^0x[0-9a-f]{64}$/);

export const ComputeGroupLimits = {
  /** Compute groups one job may name. */
  maxGroupsPerJob: 16,
  /** Compute groups one worker may join. */
  maxGroupsPerWorker: 64,
  maxJoinSecretBytes: 1024,
  maxDescriptionBytes: 1000,
} as const;

/** The public group's name: reserved, it cannot be created. */
export const publicComputeGroup = 'public';

export const JoinKeySchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'a join key is 1 to 63 lower-case letters, digits, dots, dashes or underscores, starting with a letter or digit');

/** How a job or a worker proves it may join a group: the secret, or the hash the group was created with. */
export const ComputeGroupCredentialSchema = z.union([
  z.object({ joinKey: JoinKeySchema, joinSecret: z.string().min(1).max(ComputeGroupLimits.maxJoinSecretBytes) }).strict(),
  z.object({ joinKey: JoinKeySchema, joinHash: JoinHashSchema }).strict(),
]);
export type ComputeGroupCredential = z.infer<typeof ComputeGroupCredentialSchema>;

export const ComputeGroupCredentialsSchema = (max: number) => z.array(ComputeGroupCredentialSchema).max(max);

/** The hash a group is created with and a credential is checked against (keccak256 of canonical JSON). */
export function joinHashOf(joinKey: string, joinSecret: string): string {
  return hashOf({ joinKey, joinSecret });
}

/** The hash a credential stands for. */
export function credentialHash(credential: ComputeGroupCredential): string {
  return 'joinSecret' in credential ? joinHashOf(credential.joinKey, credential.joinSecret) : credential.joinHash;
}

/**
 * Whether a worker in `workerGroups` (and in the public group when `publicGroup`) may run a job
 * that names `jobGroups` (none: the public group).
 */
export function sharesComputeGroup(jobGroups: readonly string[], workerGroups: ReadonlySet<string>, publicGroup: boolean): boolean {
  if (jobGroups.length === 0) return publicGroup;
  return jobGroups.some((group) => workerGroups.has(group));
}
