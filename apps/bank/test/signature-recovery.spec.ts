import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { getAddress, hashMessage, recoverAddress, Signature, Wallet } from 'ethers';
import { recoverRequestSigner, SignedKind, signedText, signRequest } from '@commune/protocol';

/**
 * The protocol's recoverRequestSigner takes the usual signature form through libsecp256k1 (the
 * `secp256k1` package's prebuilt binding) for speed; everything it answers must be exactly what
 * ethers' recoverAddress answers, valid or not.
 */
const N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141');
const hex32 = (value: bigint) => value.toString(16).padStart(64, '0');

function byEthers(kind: SignedKind, payload: unknown, signature: string): string | null {
  try {
    return getAddress(recoverAddress(hashMessage(signedText(kind, payload)), signature));
  } catch {
    return null;
  }
}

describe('recoverRequestSigner (native libsecp256k1, cross-checked against ethers)', () => {
  it('has the native binding on this machine (so the fast path is what these tests exercise)', () => {
    const protocolRequire = createRequire(createRequire(import.meta.url).resolve('@commune/protocol'));
    expect(typeof (protocolRequire('secp256k1/bindings') as { ecdsaRecover?: unknown }).ecdsaRecover).toBe('function');
  });

  it('recovers the signer of 200 random requests exactly as ethers does, and nobody for the other kind', async () => {
    for (let i = 0; i < 200; i++) {
      const wallet = Wallet.createRandom();
      const payload = { from: wallet.address, to: Wallet.createRandom().address, amount: String(BigInt('0x' + randomBytes(12).toString('hex'))), idempotencyKey: `k-${i}-${randomBytes(4).toString('hex')}`, expiresAt: Date.now() + i };
      const signature = await signRequest(wallet, SignedKind.transfer, payload);
      expect(recoverRequestSigner(SignedKind.transfer, payload, signature)).toBe(wallet.address);
      expect(byEthers(SignedKind.transfer, payload, signature)).toBe(wallet.address);
      const other = recoverRequestSigner(SignedKind.withdrawal, payload, signature);
      expect(other).toBe(byEthers(SignedKind.withdrawal, payload, signature));
      expect(other).not.toBe(wallet.address);
    }
  });

  it('agrees with ethers on every other form: v 0/1, high s, compact, bad v, r or s out of range, garbage', async () => {
    const wallet = Wallet.createRandom();
    const payload = { n: 1 };
    const signature = await signRequest(wallet, SignedKind.deploy, payload);
    const sig = Signature.from(signature);
    const r = BigInt(sig.r);
    const s = BigInt(sig.s);
    const vByte = (v: number) => v.toString(16).padStart(2, '0');
    const forms: string[] = [
      signature,
      signature.toUpperCase().replace('0X', '0x'),
      `0x${hex32(r)}${hex32(s)}${vByte(sig.v - 27)}`, // v as 0/1
      `0x${hex32(r)}${hex32(N - s)}${vByte(55 - sig.v)}`, // the malleated twin: high s, other parity
      `0x${hex32(r)}${hex32(N - s)}${vByte(sig.v)}`,
      sig.compactSerialized, // EIP-2098 64 bytes
      `0x${hex32(r)}${hex32(s)}${vByte(29)}`,
      `0x${hex32(r)}${hex32(s)}${vByte(37)}`, // EIP-155 style v
      `0x${hex32(0n)}${hex32(s)}${vByte(27)}`,
      `0x${hex32(r)}${hex32(0n)}${vByte(27)}`,
      `0x${hex32(N)}${hex32(s)}${vByte(27)}`,
      `0x${hex32(N + 5n)}${hex32(s)}${vByte(28)}`,
      `0x${hex32(r)}${hex32(N + 1n)}${vByte(27)}`.replace(/^0x/, '0x'),
      `0x${'ff'.repeat(65)}`,
      `0x${'00'.repeat(65)}`,
      signature.slice(0, -2),
      signature + '00',
      signature.slice(0, 100) + 'zz' + signature.slice(102),
      '0x',
      '',
      'not a signature',
    ];
    for (let i = 0; i < 50; i++) forms.push('0x' + randomBytes(64).toString('hex') + vByte(27 + (i % 2)));
    for (const form of forms) {
      expect([form, recoverRequestSigner(SignedKind.deploy, payload, form)]).toEqual([form, byEthers(SignedKind.deploy, payload, form)]);
    }
    expect(recoverRequestSigner(SignedKind.deploy, payload, `0x${hex32(r)}${hex32(s)}${vByte(sig.v - 27)}`)).toBe(wallet.address);
  });
});
