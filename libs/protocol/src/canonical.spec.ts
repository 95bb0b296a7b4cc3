import { Wallet } from 'ethers';
import { canonicalJson, recoverSigner, signPayload, verifyPayload } from './canonical.js';

describe('canonicalJson', () => {
  it('sorts keys at every depth and drops undefined members', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: undefined, x: 2 }], c: null } })).toBe('{"a":{"c":null,"d":[1,{"x":2,"z":1}]},"b":1}');
  });
  it('is the same for objects built in different orders', () => {
    expect(canonicalJson({ x: 1, y: 2 })).toBe(canonicalJson({ y: 2, x: 1 }));
  });
});

describe('signPayload', () => {
  const wallet = Wallet.createRandom();
  it('verifies for the signer and recovers its address', async () => {
    const payload = { job: 'a', n: [1, 2] };
    const signature = await signPayload(wallet, payload);
    expect(verifyPayload({ n: [1, 2], job: 'a' }, signature, wallet.address)).toBe(true);
    expect(recoverSigner(payload, signature)).toBe(wallet.address);
  });
  it('fails for a changed payload or another address', async () => {
    const signature = await signPayload(wallet, { a: 1 });
    expect(verifyPayload({ a: 2 }, signature, wallet.address)).toBe(false);
    expect(verifyPayload({ a: 1 }, signature, Wallet.createRandom().address)).toBe(false);
    expect(recoverSigner({ a: 1 }, '0xdead')).toBeNull();
  });
});
