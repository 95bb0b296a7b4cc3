import { ErrorCode, joinHashOf, sharesComputeGroup } from '@commune/protocol';
import { verifyCredentials, type GroupRecord } from './membership.js';

const lab: GroupRecord = { joinKey: 'lab', joinHash: joinHashOf('lab', 'secret') };
const farm: GroupRecord = { joinKey: 'farm', joinHash: joinHashOf('farm', 'other') };
const stored = new Map([lab, farm].map((group) => [group.joinKey, group]));

describe(verifyCredentials.name, () => {
  it('accepts the join secret or its hash, and returns each key once in order', () => {
    expect(verifyCredentials([{ joinKey: 'farm', joinHash: farm.joinHash }, { joinKey: 'lab', joinSecret: 'secret' }, { joinKey: 'farm', joinSecret: 'other' }], stored)).toEqual(['farm', 'lab']);
    expect(verifyCredentials([], stored)).toEqual([]);
  });
  it('refuses a wrong secret or hash with EPERM and an unknown group with ENOTFOUND, naming the group', () => {
    expect(() => verifyCredentials([{ joinKey: 'lab', joinSecret: 'guess' }], stored)).toThrow(expect.objectContaining({ code: ErrorCode.EPERM, message: 'wrong joinSecret for compute group "lab"' }));
    expect(() => verifyCredentials([{ joinKey: 'lab', joinHash: farm.joinHash }], stored)).toThrow(expect.objectContaining({ code: ErrorCode.EPERM }));
    expect(() => verifyCredentials([{ joinKey: 'nope', joinSecret: 'x' }], stored)).toThrow(expect.objectContaining({ code: ErrorCode.ENOTFOUND }));
  });
  it('binds the hash to the key: the same secret under another key is another hash', () => {
    expect(joinHashOf('lab', 'secret')).not.toBe(joinHashOf('farm', 'secret'));
  });
});

describe(sharesComputeGroup.name, () => {
  it('runs public jobs on public-group workers only, and group jobs on workers sharing one of their groups', () => {
    expect(sharesComputeGroup([], new Set(), true)).toBe(true);
    expect(sharesComputeGroup([], new Set(['lab']), false)).toBe(false);
    expect(sharesComputeGroup(['lab', 'farm'], new Set(['farm']), false)).toBe(true);
    expect(sharesComputeGroup(['lab'], new Set(['farm']), true)).toBe(false);
  });
});
