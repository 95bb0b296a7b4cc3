import { CommuneError, ErrorCode, Limits, type RangeObjectDescriptor, type SparseInputSetDescriptor } from '@commune/protocol';
import { isRangeLike, isSparseRangeLike, type SparseRangeDescriptor } from './descriptors.js';
import { type InputSet, sliceIterable } from './input-set.js';
import { checkIndex, describeValue, invalid } from './numbers.js';
import { RangeObject } from './range-object.js';

/**
 * spec "Sparse Range Objects": the slices of several range objects, one range after another.
 * Each range keeps its own step and group, so slice data are exactly the concatenation of each
 * range's slice data. Nothing is materialised: it travels as its descriptor and slice i is found by
 * a binary search over the ranges, O(log ranges), however many elements they hold.
 */
export class SparseRangeObject implements InputSet, Iterable<unknown> {
  readonly ranges: readonly RangeObject[];
  readonly sliceCount: number;
  /** firstSlice[k] is the slice index at which ranges[k] starts; ascending. */
  readonly #firstSlice: number[];

  constructor(descriptor: SparseRangeDescriptor) {
    if (!isSparseRangeLike(descriptor)) throw invalid(`a sparse range object must be {sparse: [range, ...]}, not ${describeValue(descriptor)}`);
    if (descriptor.sparse.length === 0) throw invalid('a sparse range object needs at least one range object');
    if (descriptor.sparse.length > Limits.maxRangesPerSparseRange) {
      throw invalid(`a sparse range object has ${descriptor.sparse.length} range objects; at most ${Limits.maxRangesPerSparseRange} are allowed`);
    }
    this.ranges = descriptor.sparse.map((part: unknown, k) => {
      if (part instanceof RangeObject) return part;
      if (isSparseRangeLike(part)) throw invalid(`sparse[${k}] is a sparse range object; sparse range objects cannot be nested`);
      if (!isRangeLike(part)) throw invalid(`sparse[${k}] must be a range object {start, end, step?, group?}, not ${describeValue(part)}`);
      return new RangeObject(part);
    });
    this.#firstSlice = [];
    let total = 0;
    for (const range of this.ranges) {
      this.#firstSlice.push(total);
      total += range.sliceCount;
    }
    if (total > Number.MAX_SAFE_INTEGER) throw new CommuneError(ErrorCode.ETOOBIG, `sparse range object has more than ${Number.MAX_SAFE_INTEGER} slices`);
    this.sliceCount = total;
  }

  /** Slice i's input, from the range that holds it (binary search: O(log ranges)). */
  sliceDatum(i: number): number | number[] {
    checkIndex(i, this.sliceCount, 'slice');
    let lo = 0;
    let hi = this.#firstSlice.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.#firstSlice[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return this.ranges[lo].sliceDatum(i - this.#firstSlice[lo]);
  }

  key(i: number): number | number[] {
    return this.sliceDatum(i);
  }

  /** The first slice whose key matches `input`: each range's arithmetic indexOf, in order. O(ranges). */
  indexOf(input: unknown): number {
    for (let k = 0; k < this.ranges.length; k++) {
      const index = this.ranges[k].indexOf(input);
      if (index !== -1) return this.#firstSlice[k] + index;
    }
    return -1;
  }

  slices(from?: number, to?: number): Iterable<number | number[]> {
    return sliceIterable(this, from, to) as Iterable<number | number[]>;
  }

  [Symbol.iterator](): Iterator<number | number[]> {
    return this.slices()[Symbol.iterator]();
  }

  toJSON(): { sparse: RangeObjectDescriptor[] } {
    return { sparse: this.ranges.map((range) => range.toJSON()) };
  }

  /** The wire form: the range descriptors, so the scheduler stays lazy too. */
  describe(): SparseInputSetDescriptor {
    return { kind: 'sparse', sparse: this.ranges.map((range) => range.toJSON()) };
  }
}
