import { canonicalJson, CommuneError, ErrorCode } from '@commune/protocol';
import { MultiRangeObject, type InputSet } from '@commune/ranges';

/**
 * spec "Result Handles": the results of a job as a plain Array indexed by slice number (so
 * `console.log(results)` prints `[ 10, 20, 30 ]`), with non-enumerable methods that marry the
 * output set to the input set. Missing results are holes, so only the values are stored.
 *
 * A multi-range job (compute.for form 3) nests instead, one level per range, as the spec's
 * examples 4 and 5 print: `results[i0][i1]...` is the result of the slice at those coordinates
 * (`[[3, 4, 5], [6, 8, 10]]`). Its methods still go by slice number and argument tuples:
 * `values()` is the flat list in slice order, `keys()`/`key(n)` the argument tuples `[i, j]`,
 * `lookupValue([i, j])` the result of work(i, j).
 */
export interface ResultHandleMethods<T = unknown> {
  /** [input, output] pairs in input-set order; primitive inputs appear as strings (spec example 1). */
  entries(): [unknown, T][];
  /** An object from each primitive input (as a string key) to its output; later inputs win collisions. */
  fromEntries(): Record<string, T>;
  /** The input set in order, primitive inputs as strings, as entries() shows them. */
  keys(): unknown[];
  /** The outputs in input-set order. */
  values(): T[];
  /** The nth input-set element as keys() shows it, computed without generating the whole set. */
  key(n: number): unknown;
  /** The output of the slice whose input is `input`; ERANGE when `input` is not in the input set. */
  lookupValue(input: unknown): T;
  /**
   * Fetches results stored on the scheduler for the slices whose numbers are in `range` (all when
   * omitted) into this handle. `emitEvents` true emits `result` for each slice that was missing,
   * 'all' for every fetched slice.
   */
  fetch(range?: SliceRangeArgument, emitEvents?: boolean | 'all'): Promise<ResultHandle<T>>;
  /** spec: the slices in `range` (all when omitted) whose results the scheduler holds, as a sparse range object over slice numbers. */
  list(range?: SliceRangeArgument): Promise<{ sparse: SliceRange[] }>;
  /** spec: deletes the results the scheduler holds for the slices in `range` (all when omitted); resolves with how many. This handle keeps its copies. */
  delete(range?: SliceRangeArgument): Promise<number>;
  /** spec: per slice in `range` with a result, {distributedTime, computedTime, payment}, in a handle with this one's API. */
  stat(range?: SliceRangeArgument): Promise<ResultHandle<SliceStatEntry>>;
}

export type ResultHandle<T = unknown> = T[] & ResultHandleMethods<T>;

/** A set of slice numbers, spec "Range Objects" style: start..end inclusive, every step-th. */
export interface SliceRange {
  start: number;
  end: number;
  step?: number;
}

/** What list/delete/fetch/stat take: a range object or a sparse range object over slice numbers. */
export type SliceRangeArgument = SliceRange | { sparse: readonly SliceRange[] };

export type ResultFetcher = (range: SliceRangeArgument | undefined, emitEvents: boolean | 'all') => Promise<void>;

/** One element of results.stat(). */
export interface SliceStatEntry {
  /** When the slice was first handed to a worker; null when the scheduler has no record of it. */
  distributedTime: Date | null;
  /** When the scheduler accepted the result. */
  computedTime: Date;
  /** DCC charged for the slice, a decimal string ('0' while jobs are free). */
  payment: string;
}

/** The scheduler side of a result handle (spec list, delete, stat); a local run has none. */
export interface RemoteResults {
  list(range: SliceRangeArgument | undefined): Promise<{ sparse: SliceRange[] }>;
  delete(range: SliceRangeArgument | undefined): Promise<number>;
  stat(range: SliceRangeArgument | undefined): Promise<ResultHandle<SliceStatEntry>>;
}

/** The write side of a result handle, kept by the job that fills it. */
export interface ResultStore<T = unknown> {
  readonly handle: ResultHandle<T>;
  /** How many slices have a result in the handle. */
  readonly receivedCount: number;
  readonly total: number;
  has(sliceIndex: number): boolean;
  /** Stores a result; false when the slice already had one (the first result wins). */
  set(sliceIndex: number, value: T): boolean;
  /** The lowest slice number >= from without a result, or -1 when there is none. */
  nextMissing(from: number): number;
}

/** Arrays cannot be longer than this, so a collated job cannot have more slices. */
export const maxCollatedSlices = 2 ** 32 - 1;

const hasOwn = Object.prototype.hasOwnProperty;
function isPrimitive(value: unknown): boolean {
  return value === null || (typeof value !== 'object' && typeof value !== 'function');
}

/** How an input appears in keys()/entries(): primitives as strings (spec example 1), others as they are. */
export function keyOf(datum: unknown): unknown {
  return isPrimitive(datum) ? String(datum) : datum;
}

export function createResultHandle<T = unknown>(inputSet: InputSet, total: number, fetcher?: ResultFetcher, remote?: RemoteResults): ResultStore<T> {
  if (total > maxCollatedSlices) {
    throw new CommuneError(ErrorCode.ETOOBIG, `a result handle holds at most ${maxCollatedSlices} slices; this job has ${total} (set collateResults = false)`);
  }
  const values: T[] = [];
  values.length = total;
  let receivedCount = 0;
  // A multi-range job's handle nests by coordinates; `values` stays the flat store by slice number.
  const multiRange = inputSet instanceof MultiRangeObject ? inputSet : undefined;
  const nested = multiRange ? holeyArray(multiRange.dimensions[0]) : undefined;

  const has = (sliceIndex: number) => hasOwn.call(values, sliceIndex);
  const checkSliceNumber = (n: number) => {
    if (!Number.isInteger(n) || n < 0 || n >= total) {
      throw new CommuneError(ErrorCode.ERANGE, `slice ${String(n)} is not in the input set (0..${total - 1})`);
    }
  };

  // Ranges (plain, sparse, multi) locate an input arithmetically; arrays through an index built once.
  const indexOfInput = (input: unknown): number => {
    const index = inputSet.indexOf(input);
    return index >= 0 && index < total ? index : -1;
  };

  const methods: ResultHandleMethods<T> = {
    entries() {
      const pairs: [unknown, T][] = [];
      for (let index = 0; index < total; index++) {
        if (has(index)) pairs.push([keyOf(inputSet.sliceDatum(index)), values[index]]);
      }
      return pairs;
    },
    fromEntries() {
      const object: Record<string, T> = {};
      for (let index = 0; index < total; index++) {
        if (!has(index)) continue;
        const datum = inputSet.sliceDatum(index);
        if (isPrimitive(datum)) object[String(datum)] = values[index];
      }
      return object;
    },
    keys() {
      const keys: unknown[] = new Array(total);
      for (let index = 0; index < total; index++) keys[index] = keyOf(inputSet.sliceDatum(index));
      return keys;
    },
    values() {
      const out: T[] = [];
      for (let index = 0; index < total; index++) if (has(index)) out.push(values[index]);
      return out;
    },
    key(n: number) {
      checkSliceNumber(n);
      return keyOf(inputSet.sliceDatum(n));
    },
    lookupValue(input: unknown) {
      const index = indexOfInput(input);
      if (index === -1) throw new CommuneError(ErrorCode.ERANGE, `${describeInput(input)} is not in the input set`);
      if (!has(index)) throw new CommuneError(ErrorCode.ENOTFOUND, `the result of slice ${index} (input ${describeInput(input)}) is not in the result handle yet`);
      return values[index];
    },
    async fetch(range?: SliceRangeArgument, emitEvents: boolean | 'all' = false) {
      if (!fetcher) throw new CommuneError(ErrorCode.EJOBSTATE, 'this result handle has no job on a scheduler to fetch from');
      await fetcher(range, emitEvents);
      return handle;
    },
    async list(range?: SliceRangeArgument) {
      return remoteOf(remote).list(range);
    },
    async delete(range?: SliceRangeArgument) {
      return remoteOf(remote).delete(range);
    },
    async stat(range?: SliceRangeArgument) {
      return remoteOf(remote).stat(range);
    },
  };
  const handle = (nested ?? values) as ResultHandle<T>;
  for (const [name, method] of Object.entries(methods)) {
    Object.defineProperty(handle, name, { value: method, enumerable: false, writable: true, configurable: true });
  }

  return {
    handle,
    get receivedCount() {
      return receivedCount;
    },
    total,
    has,
    set(sliceIndex, value) {
      if (sliceIndex < 0 || sliceIndex >= total || has(sliceIndex)) return false;
      values[sliceIndex] = value;
      if (multiRange && nested) placeNested(nested, multiRange, sliceIndex, value);
      receivedCount++;
      return true;
    },
    nextMissing(from) {
      if (receivedCount === total) return -1;
      for (let index = Math.max(0, from); index < total; index++) if (!has(index)) return index;
      return -1;
    },
  };
}

function describeInput(input: unknown): string {
  try {
    return isPrimitive(input) ? JSON.stringify(input) ?? String(input) : canonicalJson(input);
  } catch {
    return String(input);
  }
}

function remoteOf(remote: RemoteResults | undefined): RemoteResults {
  if (!remote) throw new CommuneError(ErrorCode.EJOBSTATE, 'this result handle has no job on a scheduler (a localExec() run keeps no results there)');
  return remote;
}

/** An array of `length` holes. */
function holeyArray(length: number): unknown[] {
  const array: unknown[] = [];
  array.length = length;
  return array;
}

/** Stores a multi-range slice's result at its coordinates, making each inner array when its first result arrives. */
function placeNested(nested: unknown[], multiRange: MultiRangeObject, sliceIndex: number, value: unknown): void {
  const coordinates = multiRange.coordinates(sliceIndex);
  let level = nested;
  for (let k = 0; k < coordinates.length - 1; k++) {
    const coordinate = coordinates[k];
    if (!hasOwn.call(level, coordinate)) level[coordinate] = holeyArray(multiRange.dimensions[k + 1]);
    level = level[coordinate] as unknown[];
  }
  level[coordinates[coordinates.length - 1]] = value;
}
