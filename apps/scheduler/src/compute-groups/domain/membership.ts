import { CommuneError, ErrorCode, credentialHash, type ComputeGroupCredential } from '@commune/protocol';

/** A stored group as membership checks need it. */
export interface GroupRecord {
  joinKey: string;
  joinHash: string;
}

/**
 * The join keys `credentials` prove membership of, in order and without repeats. An unknown
 * group is ENOTFOUND and a wrong secret EPERM, naming the group: a job or worker that asked for a
 * group it cannot join must not silently run elsewhere. Pure: `groups` are the stored records of
 * the keys named.
 */
export function verifyCredentials(credentials: readonly ComputeGroupCredential[], groups: ReadonlyMap<string, GroupRecord>): string[] {
  const joined: string[] = [];
  for (const credential of credentials) {
    const group = groups.get(credential.joinKey);
    if (!group) throw new CommuneError(ErrorCode.ENOTFOUND, `there is no compute group "${credential.joinKey}"`);
    if (credentialHash(credential) !== group.joinHash) {
      throw new CommuneError(ErrorCode.EPERM, `wrong ${'joinSecret' in credential ? 'joinSecret' : 'joinHash'} for compute group "${credential.joinKey}"`);
    }
    if (!joined.includes(group.joinKey)) joined.push(group.joinKey);
  }
  return joined;
}
