import { CommuneError, ErrorCode, Limits, type MultiInputSetDescriptor, type MultiRangeDimensionDescriptor, type RangeObjectDescriptor } from '@commune/protocol';
import { isDistributionLike, isMultiRangeLike, isRangeLike, isSparseRangeLike, type SparseRangeDescriptor } from './descriptors.js';
import { Distribution, type DistributionSpec } from './distribution.js';
import { type InputSet, sliceIterable } from './input-set.js';
import { checkIndex, describeValue, invalid } from './numbers.js';
import { RangeObject } from './range-object.js';
import { SparseRangeObject } from './sparse-range-object.js';

/** One loop of a multi-range object. */
export type MultiRangeDimension = RangeObject | SparseRangeObject | Distribution;

/** What a multi-range dimension may be given as: an instance, or its plain descriptor. */
export type MultiRangeDimensionLike = MultiRangeDimension | RangeObjectDescriptor | SparseRangeDescriptor | DistributionSpec;

/**
 * spec compute.for form 3, `{ranges: [range, range, ...]}`: nested loops. The slices are the
 * cartesian product of the ranges' slices, the leftmost range being the outermost loop, so with
 * ranges of sizes n0, n1, ..., slice i is at coordinates (i0, i1, ...) with i = ((i0·n1 + i1)·n2 + i2)...
 *
 * Slice i's datum is the tuple [range0's slice i0, range1's slice i1, ...], which the work function
 * receives spread out as separate arguments (work(a, b, ...arguments); Task.spreadDatum). Nothing is
 * materialised: datum(i) costs O(number of ranges) whatever the size of the product, and the set
 * travels as its descriptor.
 *
 * A dimension is a range object (with its own step and group: a grouped range gives its group array
 * as one argument), a sparse range object or a distribution object.
 */
export class MultiRangeObject implements InputSet, Iterable<unknown[]> {
  readonly ranges: readonly MultiRangeDimension[];
  /** Slices of each range, leftmost first: the shape of the nested result. */
  readonly dimensions: readonly number[];
  readonly sliceCount: number;

  constructor(descriptor: { ranges: readonly MultiRangeDimensionLike[] } | readonly MultiRangeDimensionLike[]) {
    const given: unknown = Array.isArray(descriptor) ? descriptor : isMultiRangeLike(descriptor) ? descriptor.ranges : undefined;
    if (!Array.isArray(given)) throw invalid(`a multi-range object must be {ranges: [range, ...]}, not ${describeValue(descriptor)}`);
    if (given.length === 0) throw invalid('a multi-range object needs at least one range object');
    if (given.length > Limits.maxRangesPerMultiRange) {
      throw invalid(`a multi-range object has ${given.length} range objects; at most ${Limits.maxRangesPerMultiRange} are allowed`);
    }
    this.ranges = given.map((part: unknown, k) => dimensionOf(part, `ranges[${k}]`));
    this.dimensions = this.ranges.map((range) => range.sliceCount);
    let total = 1;
    for (const size of this.dimensions) {
      if (size !== 0 && total > Number.MAX_SAFE_INTEGER / size) {
        throw new CommuneError(ErrorCode.ETOOBIG, `multi-range object has more than ${Number.MAX_SAFE_INTEGER} slices (${this.dimensions.join(' × ')})`);
      }
      total *= size;
    }
    this.sliceCount = total;
  }

  /** Recreates a multi-range object from its wire form. */
  static fromDescriptor(descriptor: MultiInputSetDescriptor): MultiRangeObject {
    if (!Array.isArray(descriptor?.ranges)) throw invalid('a multi-range descriptor needs a ranges array');
    return new MultiRangeObject({ ranges: descriptor.ranges.map((dimension, k) => dimensionFromDescriptor(dimension, k)) });
  }

  /** The coordinates of slice i in each range, leftmost first. O(number of ranges). */
  coordinates(i: number): number[] {
    checkIndex(i, this.sliceCount, 'slice');
    const coordinates = new Array<number>(this.dimensions.length);
    let rest = i;
    for (let k = this.dimensions.length - 1; k >= 0; k--) {
      const size = this.dimensions[k];
      coordinates[k] = rest % size;
      rest = Math.floor(rest / size);
    }
    return coordinates;
  }

  /** Slice i's datum: the tuple of each range's slice at i's coordinates, the work function's arguments. */
  sliceDatum(i: number): unknown[] {
    const coordinates = this.coordinates(i);
    const tuple = new Array<unknown>(coordinates.length);
    for (let k = 0; k < coordinates.length; k++) tuple[k] = this.ranges[k].sliceDatum(coordinates[k]);
    return tuple;
  }

  /** The input of slice i as result handles show it: the argument tuple (spec "entries()": "an Array equivalent to the arguments vector"). */
  key(i: number): unknown[] {
    return this.sliceDatum(i);
  }

  /**
   * The slice whose argument tuple matches `input` (an array with one element per range): each
   * element is located in its own range, so this is as cheap as the ranges' indexOf. -1 when any
   * element is not in its range.
   */
  indexOf(input: unknown): number {
    if (!Array.isArray(input) || input.length !== this.ranges.length) return -1;
    let index = 0;
    for (let k = 0; k < this.ranges.length; k++) {
      const position = this.ranges[k].indexOf(input[k]);
      if (position === -1) return -1;
      index = index * this.dimensions[k] + position;
    }
    return index;
  }

  slices(from?: number, to?: number): Iterable<unknown[]> {
    return sliceIterable(this, from, to) as Iterable<unknown[]>;
  }

  [Symbol.iterator](): Iterator<unknown[]> {
    return this.slices()[Symbol.iterator]();
  }

  toJSON(): { ranges: Array<RangeObjectDescriptor | { sparse: RangeObjectDescriptor[] } | DistributionSpec> } {
    return { ranges: this.ranges.map((range) => range.toJSON()) };
  }

  describe(): MultiInputSetDescriptor {
    return { kind: 'multi', ranges: this.ranges.map((range) => range.describe() as MultiRangeDimensionDescriptor) };
  }
}

function dimensionOf(part: unknown, where: string): MultiRangeDimension {
  if (part instanceof RangeObject || part instanceof SparseRangeObject || part instanceof Distribution) return part;
  if (part instanceof MultiRangeObject || isMultiRangeLike(part)) throw invalid(`${where} is a multi-range object; multi-range objects cannot be nested (list all the ranges in one)`);
  if (isSparseRangeLike(part)) return new SparseRangeObject(part);
  if (isDistributionLike(part)) return new Distribution(part as unknown as DistributionSpec);
  if (isRangeLike(part)) return new RangeObject(part);
  throw invalid(`${where} must be a range object {start, end, step?, group?}, a sparse range object or a distribution, not ${describeValue(part)}`);
}

function dimensionFromDescriptor(dimension: MultiRangeDimensionDescriptor, k: number): MultiRangeDimension {
  switch (dimension?.kind) {
    case 'range':
      return new RangeObject(dimension.range);
    case 'sparse':
      return new SparseRangeObject(dimension);
    case 'distribution':
      return new Distribution(dimension);
    default:
      throw invalid(`ranges[${k}] has unknown kind ${describeValue((dimension as { kind?: unknown } | undefined)?.kind)}`);
  }
}
