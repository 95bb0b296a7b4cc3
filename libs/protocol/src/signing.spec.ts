import { Wallet } from 'ethers';
import { CommuneError } from './errors.js';
import { recoverRequestSigner, signedText, signRequest, SignedKind, verifySignedRequest, type NonceStore } from './signing.js';

const wallet = Wallet.createRandom();
const memoryNonces = (): NonceStore => {
  const seen = new Set<string>();
  return { claim: async (signer, kind, nonce) => !seen.has(`${signer}:${kind}:${nonce}`) && Boolean(seen.add(`${signer}:${kind}:${nonce}`)) };
};
const codeOf = async (promise: Promise<unknown>): Promise<string> => {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return (error as CommuneError).code;
  }
};

describe('signed requests', () => {
  const payload = { from: wallet.address, to: Wallet.createRandom().address, amount: '5', idempotencyKey: 'k-12345678', expiresAt: Date.now() + 60_000 };

  it('name their kind in the signed text', () => {
    expect(signedText(SignedKind.transfer, { a: 1 })).toBe('Commune signed request v1\nkind: transfer\n{"a":1}');
  });

  it('recover the signer for the kind they were made for, and nobody for another kind', async () => {
    const signature = await signRequest(wallet, SignedKind.transfer, payload);
    expect(recoverRequestSigner(SignedKind.transfer, payload, signature)).toBe(wallet.address);
    expect(recoverRequestSigner(SignedKind.withdrawal, payload, signature)).not.toBe(wallet.address);
    expect(recoverRequestSigner(SignedKind.transfer, { ...payload, amount: '6' }, signature)).not.toBe(wallet.address);
    expect(recoverRequestSigner(SignedKind.transfer, payload, '0xdead')).toBeNull();
  });

  it('verify expiry, signer, kind and nonce with one code each', async () => {
    const now = Date.now();
    const policy = { now, maxLifetimeMs: 600_000, nonces: memoryNonces() };
    const signature = await signRequest(wallet, SignedKind.jobAction, payload);
    const check = { kind: SignedKind.jobAction, payload, signature, signer: wallet.address, expiresAt: now + 60_000, nonce: 'n-1234567' };
    expect(await verifySignedRequest(check, policy)).toBe(wallet.address);
    expect(await codeOf(verifySignedRequest(check, policy))).toBe('EREPLAY');
    expect(await codeOf(verifySignedRequest({ ...check, nonce: 'n-2' , kind: SignedKind.ownerRequest }, policy))).toBe('EBADSIGNATURE');
    expect(await codeOf(verifySignedRequest({ ...check, nonce: 'n-3', signer: Wallet.createRandom().address }, policy))).toBe('EBADSIGNATURE');
    expect(await codeOf(verifySignedRequest({ ...check, nonce: 'n-4', expiresAt: now - 1 }, policy))).toBe('EEXPIRED');
    expect(await codeOf(verifySignedRequest({ ...check, nonce: 'n-5', expiresAt: now + 700_000 }, policy))).toBe('EEXPIRED');
    expect(await codeOf(verifySignedRequest({ ...check, nonce: 'n-6', signer: 'not an address' }, policy))).toBe('EINVAL');
    expect(await codeOf(verifySignedRequest({ ...check, nonce: 'n-7', signature: 42 as unknown as string }, policy))).toBe('EBADSIGNATURE');
  });
});
