import { randomBytes } from 'node:crypto';
import { getAddress, hashMessage, keccak256, Wallet } from 'ethers';
import { recoverRequestSigner, SignedKind, signRequest } from '@commune/protocol';
import { useNativeKeccak } from '../src/crypto/native-keccak.js';

describe('native keccak256 for ethers (useNativeKeccak)', () => {
  it('gives exactly the digests of ethers’ own keccak256, for every length around the 136-byte block', async () => {
    const inputs = [new Uint8Array(0), new Uint8Array(1), new Uint8Array(20).fill(0xff)];
    for (const length of [31, 32, 33, 135, 136, 137, 271, 272, 273, 1000, 4096]) inputs.push(new Uint8Array(randomBytes(length)));
    for (let i = 0; i < 200; i++) inputs.push(new Uint8Array(randomBytes(i)));
    const wallet = Wallet.createRandom();
    const payload = { from: wallet.address, amount: '1', n: 7 };
    const signature = await signRequest(wallet, SignedKind.transfer, payload);
    const big = new Uint8Array(randomBytes(300));
    const sliceDigest = keccak256(new Uint8Array(big.subarray(100, 164)));
    const before = { digests: inputs.map((input) => keccak256(input)), message: hashMessage('Commune'), address: getAddress(wallet.address.toLowerCase()) };

    expect(useNativeKeccak()).toBe(true); // the prebuilt binding loads on these machines
    expect(inputs.map((input) => keccak256(input))).toEqual(before.digests);
    expect(hashMessage('Commune')).toBe(before.message);
    expect(getAddress(wallet.address.toLowerCase())).toBe(before.address);
    expect(recoverRequestSigner(SignedKind.transfer, payload, signature)).toBe(wallet.address);
    // A subarray of a bigger buffer hashes only its own bytes.
    expect(keccak256(big.subarray(100, 164))).toBe(sliceDigest);
  });
});
