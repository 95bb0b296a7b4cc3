import { createHash } from 'node:crypto';
import { Wallet } from 'ethers';
import { canonicalJson } from './canonical.js';
import { deploySigningPayload, inputValuesDigest, inputValuesText, signDeploy } from './deploy-signing.js';
import { JobSpecSchema } from './schemas.js';
import { recoverRequestSigner, SignedKind, signRequest } from './signing.js';

const owner = new Wallet('0x' + '0b'.repeat(32));
const specWith = (inputSet: unknown) =>
  JobSpecSchema.parse({ owner: owner.address, work: '(x) => x', inputSet, nonce: 'n_deploy_0001', issuedAt: 1, expiresAt: 2 });

describe('deploy signing', () => {
  it('digests an array input set as the sha256 of its canonical JSON', () => {
    const values = [{ b: 1, a: [2, 'x'] }, 3, null];
    const text = inputValuesText(values);
    expect(text).toBe(canonicalJson(values));
    expect(inputValuesDigest(text)).toBe('0x' + createHash('sha256').update('[{"a":[2,"x"],"b":1},3,null]').digest('hex'));
  });

  it('signs an array job over {kind, count, sha256} in place of the values; other input sets as they are', () => {
    const array = specWith({ kind: 'array', values: [1, 2, 3] });
    expect(deploySigningPayload(array).inputSet).toEqual({ kind: 'array', count: 3, sha256: inputValuesDigest('[1,2,3]') });
    const range = specWith({ kind: 'range', range: { start: 0, end: 9 } });
    expect(deploySigningPayload(range)).toBe(range);
  });

  it('a deploy signature recovers its owner only for the values it was made over', async () => {
    const spec = specWith({ kind: 'array', values: Array.from({ length: 1000 }, (_, i) => i) });
    const signature = await signDeploy(owner, spec);
    expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(spec), signature)).toBe(owner.address);
    const changed = { ...spec, inputSet: { kind: 'array' as const, values: [...(spec.inputSet as { values: number[] }).values.slice(0, -1), -1] } };
    expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(changed), signature)).not.toBe(owner.address);
    // Signed over the values themselves (the old way) is not a deploy signature.
    expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(spec), await signRequest(owner, SignedKind.deploy, spec))).not.toBe(owner.address);
  });
});
