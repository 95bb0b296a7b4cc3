import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { keccak256 } from 'ethers';

interface KeccakState {
  initialize(rate: number, capacity: number): void;
  absorb(data: Buffer): void;
  absorbLastFewBits(bits: number): void;
  squeeze(length: number): Buffer;
}

let installed: boolean | undefined;

/**
 * Makes ethers' keccak256 (and so getAddress, hashMessage, the protocol's hashOf and signature
 * recovery) use the `keccak` package's native Keccak-f (prebuilt N-API) in this process: ~3 µs a
 * hash against ~17-30 µs for ethers' JS one, and a signed transfer takes about nine. Same digests
 * (apps/bank/test/native-keccak.spec.ts). Where the binding does not load, ethers' own stays.
 * Returns whether the native one is in use.
 */
export function useNativeKeccak(): boolean {
  if (installed !== undefined) return installed;
  try {
    const requireHere = createRequire(import.meta.url);
    const keccakDir = dirname(requireHere.resolve('keccak/package.json'));
    const requireInKeccak = createRequire(`${keccakDir}/package.json`);
    const KeccakNative = (requireInKeccak('node-gyp-build') as (dir: string) => new () => KeccakState)(keccakDir);
    const state = new KeccakNative();
    const hash = (data: Uint8Array): Uint8Array => {
      // Keccak-256: rate 1088, capacity 512, the original padding (0x01), 32 bytes out.
      state.initialize(1088, 512);
      state.absorb(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      state.absorbLastFewBits(0x01);
      return state.squeeze(32);
    };
    const empty = hash(new Uint8Array(0));
    if (Buffer.from(empty).toString('hex') !== 'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470') throw new Error('wrong digest');
    keccak256.register(hash);
    installed = true;
  } catch {
    installed = false;
  }
  return installed;
}
