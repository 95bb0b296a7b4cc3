import {
  CommuneError, ComputeGroupInfoSchema, CreateComputeGroupSchema, ErrorCode, Limits, joinHashOf, newId, SignedKind, signRequest,
  type ComputeGroupInfo,
} from '@commune/protocol';
import type { SchedulerLink } from './connection.js';
import type { JobSigner } from './job.js';

/** What `compute.createComputeGroup` takes. The secret never leaves this process: only its hash is sent. */
export interface CreateComputeGroupOptions {
  joinKey: string;
  joinSecret: string;
  description?: string;
}

/**
 * Creates a compute group owned by `signer` on the scheduler. Jobs join it with
 * `job.computeGroups = [{ joinKey, joinSecret }]`, workers with `--join joinKey:joinSecret`.
 * EEXIST when the join key is taken.
 */
export async function createComputeGroup(link: SchedulerLink, signer: JobSigner, options: CreateComputeGroupOptions): Promise<ComputeGroupInfo> {
  if (typeof options?.joinSecret !== 'string' || options.joinSecret.length === 0) throw new CommuneError(ErrorCode.EINVAL, 'createComputeGroup needs a non-empty joinSecret');
  const parsed = CreateComputeGroupSchema.safeParse({
    joinKey: options.joinKey,
    joinHash: joinHashOf(options.joinKey, options.joinSecret),
    description: options.description ?? '',
    owner: await signer.getAddress(),
    nonce: newId('n'),
    expiresAt: Date.now() + Limits.maxSignatureLifetimeMs / 2,
  });
  if (!parsed.success) throw new CommuneError(ErrorCode.EINVAL, `createComputeGroup: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  const request = parsed.data;
  const reply = ComputeGroupInfoSchema.safeParse(await link.rest('POST', 'compute-groups', undefined, { request, signature: await signRequest(signer, SignedKind.computeGroup, request) }));
  if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed compute group reply: ${reply.error.message}`);
  return reply.data;
}

/** What anyone may know about a compute group: key, owner, description, creation time (ENOTFOUND if there is none). */
export async function getComputeGroup(link: SchedulerLink, joinKey: string): Promise<ComputeGroupInfo> {
  const reply = ComputeGroupInfoSchema.safeParse(await link.rest('GET', `compute-groups/${encodeURIComponent(joinKey)}`));
  if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed compute group reply: ${reply.error.message}`);
  return reply.data;
}
