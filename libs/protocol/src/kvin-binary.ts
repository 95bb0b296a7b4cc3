import { zeroRunForIslands } from './kvin-format.js';

/**
 * Typed array bytes in KVIN: each byte is one character (U+0000..U+00FF) of a string, written
 * whole (`ab8`) or, when the bytes hold long runs of zeros, as islands of non-zero bytes with their
 * offsets (`isl8` and `len`). kvin also reads 16-bit words (`ab16`/`isl16`, its "size" tuning),
 * which only the decoder handles. All of it assumes a little-endian machine, as kvin does.
 */

export const isLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface Island {
  0: string;
  '@': number;
}

/** The KVIN fields of a typed array's or DataView's bytes: `{ab8}`, or `{isl8, len}` when that is shorter. */
export function binaryFields(view: ArrayBufferView): { ab8: string } | { isl8: Island[]; len: number } {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  const length = bytes.length;
  const islands: Island[] = [];
  let start = -1; // where the current island began, or -1 inside a long run of zeros
  let zeros = 0; // zeros just before i
  let islandsPay = false;
  for (let i = 0; i < length; i++) {
    if (bytes[i] === 0) {
      zeros++;
      continue;
    }
    if (start === -1) {
      start = i;
      if (i > 0 && zeros >= zeroRunForIslands) islandsPay = true;
    } else if (zeros >= zeroRunForIslands) {
      islands.push({ 0: latin1(bytes.subarray(start, i - zeros)), '@': start });
      start = i;
      islandsPay = true;
    }
    zeros = 0;
  }
  if (zeros >= zeroRunForIslands) islandsPay = true;
  if (!islandsPay) return { ab8: latin1(bytes) };
  if (start !== -1) islands.push({ 0: latin1(bytes.subarray(start, length - zeros)), '@': start });
  return { isl8: islands, len: length };
}

/** Bytes as a string of U+0000..U+00FF (String.fromCharCode in slices: it takes its bytes as arguments). */
export function latin1(bytes: Uint8Array): string {
  const slice = 8192;
  if (bytes.length <= slice) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  const parts: string[] = [];
  for (let i = 0; i < bytes.length; i += slice) parts.push(String.fromCharCode.apply(null, bytes.subarray(i, i + slice) as unknown as number[]));
  return parts.join('');
}

/**
 * Writes the characters of `text` into `bytes` from `offset`, one byte each. Returns false when
 * a character is above U+00FF (not a byte: the text is malformed).
 */
export function writeLatin1(text: string, bytes: Uint8Array, offset: number): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code > 0xff) return false;
    bytes[offset + i] = code;
  }
  return true;
}

/** Writes the characters of `text` into `bytes` from word `offset`, two bytes each (little-endian), within `bytes`. */
export function writeUcs2(text: string, bytes: Uint8Array, offset: number): void {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const at = 2 * (offset + i);
    bytes[at] = code & 0xff;
    if (at + 1 < bytes.length) bytes[at + 1] = code >>> 8;
  }
}
