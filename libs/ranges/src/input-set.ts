import { canonicalJson, CommuneError, ErrorCode, type InputSetDescriptor } from '@commune/protocol';

/**
 * What the SDK, the scheduler and result handles need from an input set, whatever its form:
 * slice i's input is computed on demand, so a range of 1e9 elements is never materialised.
 */
export interface InputSet {
  /** Number of slices (one per element, or one per group of a grouped range). */
  readonly sliceCount: number;
  /** The argument work receives for slice i. Throws ERANGE for an index outside [0, sliceCount). */
  sliceDatum(i: number): unknown;
  /** The input-set element for slice i, for result handles' keys()/entries()/key(n). */
  key(i: number): unknown;
  /**
   * The first slice whose key matches `input` (see {@link inputKey}: 1 and '1' match, arrays and
   * objects match by canonical JSON), or -1. Ranges find it arithmetically; result handles'
   * lookupValue() uses it.
   */
  indexOf(input: unknown): number;
  /** The wire form (protocol InputSetSchema) that recreates this set via inputSetFromDescriptor. */
  describe(): InputSetDescriptor;
  /** Slice data for slices [from, to), computed lazily. */
  slices(from?: number, to?: number): Iterable<unknown>;
}

/** Validates a [from, to) window of slices; both ends default to the whole set. */
export function sliceWindow(sliceCount: number, from = 0, to = sliceCount): [number, number] {
  const ok = Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to <= sliceCount;
  if (!ok) {
    throw new CommuneError(ErrorCode.ERANGE, `slice window [${String(from)}, ${String(to)}) is not within [0, ${sliceCount}]`);
  }
  return [from, to];
}

/**
 * What every InputSet's slices() returns. The window is checked here, eagerly, so a bad window
 * throws at the call rather than at the first next().
 */
export function sliceIterable(set: InputSet, from?: number, to?: number): Generator<unknown, void, undefined> {
  const [first, end] = sliceWindow(set.sliceCount, from, to);
  return (function* () {
    for (let i = first; i < end; i++) yield set.sliceDatum(i);
  })();
}

function isPrimitive(value: unknown): boolean {
  return value === null || (typeof value !== 'object' && typeof value !== 'function');
}

/**
 * What makes two inputs the same for indexOf(): primitives by their string form (so 1 and '1' are
 * the same input, as result handles show primitive keys as strings), anything else by canonical JSON.
 */
export function inputKey(value: unknown): string {
  return isPrimitive(value) ? 'p:' + String(value) : 'o:' + canonicalJson(value);
}
