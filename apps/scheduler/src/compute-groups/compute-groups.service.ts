import { Injectable } from '@nestjs/common';
import {
  CommuneError, CreateComputeGroupRequestSchema, ErrorCode, SignedKind, type ComputeGroupCredential, type ComputeGroupInfo,
} from '@commune/protocol';
import { SignedRequests } from '../auth/signed-requests.js';
import { ComputeGroupsRepository } from './compute-groups.repository.js';
import { verifyCredentials } from './domain/membership.js';

/**
 * Compute groups: created by a signed request (the signer owns the group), joined by jobs at
 * deploy and by workers at connection with the join key and secret (or its hash).
 */
@Injectable()
export class ComputeGroupsService {
  constructor(private readonly repository: ComputeGroupsRepository, private readonly signed: SignedRequests) {}

  async create(body: unknown): Promise<ComputeGroupInfo> {
    const { request, signature } = CreateComputeGroupRequestSchema.parse(body);
    await this.signed.verify({ kind: SignedKind.computeGroup, payload: request, signature, signer: request.owner, expiresAt: request.expiresAt, nonce: request.nonce });
    const created = await this.repository.create({ joinKey: request.joinKey, joinHash: request.joinHash, owner: request.owner, description: request.description ?? '' });
    if (!created) throw new CommuneError(ErrorCode.EEXIST, `the compute group "${request.joinKey}" already exists`);
    return (await this.repository.info(request.joinKey))!;
  }

  async info(joinKey: string): Promise<ComputeGroupInfo> {
    const info = await this.repository.info(joinKey);
    if (!info) throw new CommuneError(ErrorCode.ENOTFOUND, `there is no compute group "${joinKey}"`);
    return info;
  }

  /** The join keys the credentials prove membership of (ENOTFOUND / EPERM otherwise). */
  async join(credentials: readonly ComputeGroupCredential[]): Promise<string[]> {
    if (credentials.length === 0) return [];
    return verifyCredentials(credentials, await this.repository.records(credentials.map((c) => c.joinKey)));
  }
}
