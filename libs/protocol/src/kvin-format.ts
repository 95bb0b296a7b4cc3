import { CommuneError, ErrorCode } from './errors.js';
import { Limits } from './limits.js';

/**
 * What the KVIN text format (DCP's `kvin` package, version 9) looks like, shared by our encoder
 * (kvin-encode.ts) and decoder (kvin-decode.ts). Neither uses the kvin package: its decoder
 * evaluates constructor names and can build functions, which hostile text must never reach.
 *
 * A text is `{"_serializeVerId":"v9","what":P}` where P, a "prepared value", is one of:
 * - a JSON string, boolean or finite number: itself;
 * - `{raw: J}`: the JSON value J as JSON.parse gives it (kvin's fast path for plain data);
 * - `{number: "NaN" | "Infinity" | "-Infinity"}`, `{json: "-0"}`, `{bigint: "123"}`, `{undefined: true}`;
 * - `{arr: [P...], ps?: {key: P}, len?: n}`: an array (`{lst: n}` in arr repeats the item before
 *   it n times; `isl` places islands of raw items; ps holds sparse items and named properties);
 * - `{mapKeys: {arr}, mapVals: {arr}, ps?}`: a Map; `{set: {arr}}`: a Set;
 * - `{ctr: C, arg?: J, args?: [J...], ps?: {key: P}}`: `new C(arg)` (or `C(...args)`) with
 *   properties ps, C being an index into the constructor table below or a global name;
 * - `{ctr: C, ab8: "latin-1 bytes"}` or `{ctr: C, isl8: [{0: bytes, "@": offset}], len: n}`: a typed
 *   array or DataView from its bytes (ab16/isl16: the same in 16-bit words, kvin's "size" tuning);
 * - `{seen: i}`: the i-th object the decoder made so far (shared references and cycles).
 */

/** The version tag we write, and the tags whose texts we read (kvin 9 reads the same). */
export const kvinVersion = 'v9';
export const kvinReadableVersions: ReadonlySet<unknown> = new Set(['v4', 'v5', 'v6', 'v7', 'v8', 'v9']);

/** The start of every text we write, before the prepared value. */
export const kvinPrefix = '{"_serializeVerId":"v9","what":';

/** How big a KVIN value may be, in the units of libs/protocol Limits. */
export interface KvinLimits {
  /**
   * Characters of KVIN text decodeKvin reads (UTF-16 code units, a lower bound of its UTF-8 bytes)
   * and encodeKvin writes; also the bytes all typed arrays of one value may hold together, since
   * KVIN writes runs of zeros in a few characters. -> ETOOBIG
   */
  maxBytes: number;
  /** Nesting of arrays, objects, Maps, Sets and other objects (a typed array is a leaf). -> ETOODEEP */
  maxDepth: number;
  /** Values of all kinds counted together (an array's items, an object's members, a Map's keys and values). -> ETOOBIG */
  maxNodes: number;
  /**
   * Decimal digits of one BigInt: parsing a BigInt costs more than linear time in its length, so a
   * text of long BigInts would cost seconds of CPU. 20,000 digits (about 66,000 bits) parse in well
   * under a millisecond. -> ETOOBIG
   */
  maxBigIntDigits: number;
}

export const defaultKvinLimits: KvinLimits = {
  maxBytes: Limits.maxMessageBytes,
  maxDepth: Limits.maxValueDepth,
  maxNodes: Limits.maxValueNodes,
  maxBigIntDigits: 20_000,
};

/** kvin 9's constructor table (KVIN.prototype.ctors): `ctr: n` means the n-th. */
export const CtrNumber = {
  Object: 0,
  Int8Array: 1,
  Uint8Array: 2,
  Uint8ClampedArray: 3,
  Int16Array: 4,
  Uint16Array: 5,
  Int32Array: 6,
  Uint32Array: 7,
  Float32Array: 8,
  Float64Array: 9,
  RegExp: 10,
  Number: 11,
  String: 12,
  Boolean: 13,
  Array: 14,
  Function: 15,
  Error: 16,
  Promise: 17,
  URL: 18,
  Date: 19,
  Set: 20,
} as const;
export const ctrNames: readonly string[] = Object.keys(CtrNumber);

export type TypedArrayName =
  | 'Int8Array'
  | 'Uint8Array'
  | 'Uint8ClampedArray'
  | 'Int16Array'
  | 'Uint16Array'
  | 'Int32Array'
  | 'Uint32Array'
  | 'Float32Array'
  | 'Float64Array'
  | 'BigInt64Array'
  | 'BigUint64Array';

type TypedArrayConstructor =
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint8ClampedArrayConstructor
  | Int16ArrayConstructor
  | Uint16ArrayConstructor
  | Int32ArrayConstructor
  | Uint32ArrayConstructor
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | BigInt64ArrayConstructor
  | BigUint64ArrayConstructor;

/**
 * The typed arrays that travel. The first nine are in kvin's table (written as numbers); the
 * BigInt arrays are written by name, as kvin does for any constructor outside its table.
 */
export const typedArrayConstructors: ReadonlyMap<TypedArrayName, TypedArrayConstructor> = new Map<TypedArrayName, TypedArrayConstructor>([
  ['Int8Array', Int8Array],
  ['Uint8Array', Uint8Array],
  ['Uint8ClampedArray', Uint8ClampedArray],
  ['Int16Array', Int16Array],
  ['Uint16Array', Uint16Array],
  ['Int32Array', Int32Array],
  ['Uint32Array', Uint32Array],
  ['Float32Array', Float32Array],
  ['Float64Array', Float64Array],
  ['BigInt64Array', BigInt64Array],
  ['BigUint64Array', BigUint64Array],
]);

/** The Error classes a decoded error may be made with (by its `name`); any other name gives a plain Error carrying that name. */
export const errorConstructors: ReadonlyMap<string, ErrorConstructor> = new Map<string, ErrorConstructor>([
  ['Error', Error],
  ['TypeError', TypeError],
  ['RangeError', RangeError],
  ['SyntaxError', SyntaxError],
  ['ReferenceError', ReferenceError],
  ['EvalError', EvalError],
  ['URIError', URIError],
]);

/** A run of at least this many zero bytes makes the encoder write a typed array as islands (isl8). */
export const zeroRunForIslands = 16;

export function unserializable(message: string): CommuneError {
  return new CommuneError(ErrorCode.EUNSERIALIZABLE, message);
}

export function malformed(message: string): CommuneError {
  return new CommuneError(ErrorCode.EINVAL, `malformed KVIN text: ${message}`);
}

export function tooDeep(limits: KvinLimits, where: string): CommuneError {
  return new CommuneError(ErrorCode.ETOODEEP, `${where} is nested deeper than ${limits.maxDepth} levels`);
}

export function tooManyNodes(limits: KvinLimits, where: string): CommuneError {
  return new CommuneError(ErrorCode.ETOOBIG, `${where} has more than ${limits.maxNodes} values`);
}

/** Own property test that a key named "hasOwnProperty" cannot shadow. */
export const hasOwn = (object: object, key: string): boolean => Object.prototype.hasOwnProperty.call(object, key);
