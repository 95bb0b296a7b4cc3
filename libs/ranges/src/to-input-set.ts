import { CommuneError, ErrorCode, type InputSetDescriptor } from '@commune/protocol';
import { ArrayInputSet } from './array-input-set.js';
import { isDistributionLike, isMultiRangeLike, isRangeLike, isSparseRangeLike } from './descriptors.js';
import { Distribution, type DistributionSpec } from './distribution.js';
import type { InputSet } from './input-set.js';
import { maxIterableElements } from './limits.js';
import { describeValue, invalid } from './numbers.js';
import { MultiRangeObject } from './multi-range-object.js';
import { RangeObject } from './range-object.js';
import { SparseRangeObject } from './sparse-range-object.js';

export interface ToInputSetOptions {
  /** Overrides {@link maxIterableElements} for non-Array iterables. */
  maxIterableElements?: number;
}

/**
 * Whether an array stands for a multi-range object (compute.for form 3, as the spec's examples 4
 * and 5 write it): it is not empty and every element is a range object, a sparse range object or a
 * distribution object (instances or plain descriptors). Any other array is form 4 data; to run
 * over range objects as data, pass them as a non-Array iterable (`array.values()`).
 */
export function isMultiRangeArray(arg: unknown): arg is unknown[] {
  return Array.isArray(arg) && arg.length > 0 && arg.every(isRangeElement);
}

function isRangeElement(x: unknown): boolean {
  return (
    x instanceof RangeObject || x instanceof SparseRangeObject || x instanceof Distribution || isRangeLike(x) || isSparseRangeLike(x) || isDistributionLike(x)
  );
}

/**
 * The input set of compute.for forms 1, 3 and 4 (forms 2a/2b go through formRange):
 * - a RangeObject, SparseRangeObject, MultiRangeObject, Distribution or ArrayInputSet: as is;
 * - a plain range object {start, end, step?, group?}: a RangeObject (EINVAL if invalid);
 * - a sparse range object {sparse: [...]}: a SparseRangeObject;
 * - a multi-range object {ranges: [...]}, or an Array whose elements are all range objects
 *   (isMultiRangeArray): a MultiRangeObject;
 * - a plain distribution {distribution, n, parameters, seed}: a Distribution;
 * - any other Array: an ArrayInputSet over a copy, so later changes to the caller's array do not leak in;
 * - any other iterable (generator, Set, typed array, ...): materialised into an ArrayInputSet,
 *   at most maxIterableElements elements (ETOOBIG beyond; the iterator is closed).
 * Strings and async iterables are rejected with EINVAL.
 */
export function toInputSet(arg: unknown, options: ToInputSetOptions = {}): InputSet {
  if (
    arg instanceof RangeObject ||
    arg instanceof ArrayInputSet ||
    arg instanceof SparseRangeObject ||
    arg instanceof MultiRangeObject ||
    arg instanceof Distribution
  ) {
    return arg;
  }
  if (isMultiRangeArray(arg)) return new MultiRangeObject({ ranges: arg as never[] });
  if (Array.isArray(arg)) return new ArrayInputSet(arg.slice());
  // A string is iterable, but a job over its characters is far more likely a mistake.
  if (typeof arg === 'string') throw invalid('a string is not an input set; pass [...text] to run one slice per character');
  if (isSparseRangeLike(arg)) return new SparseRangeObject(arg);
  if (isMultiRangeLike(arg)) return new MultiRangeObject(arg as never);
  if (isDistributionLike(arg)) return new Distribution(arg as unknown as DistributionSpec);
  if (isRangeLike(arg)) return new RangeObject(arg);
  if (isIterable(arg)) return new ArrayInputSet(materialise(arg, options.maxIterableElements ?? maxIterableElements));
  if (isAsyncIterable(arg)) throw invalid('async iterables are not supported as input sets; collect the values into an array first');
  throw invalid(`compute.for needs a range object, an array or an iterable as its input set, not ${describeValue(arg)}`);
}

/** Recreates an input set from its wire form (the scheduler computes slice data from this). */
export function inputSetFromDescriptor(descriptor: InputSetDescriptor): InputSet {
  switch (descriptor?.kind) {
    case 'range':
      return new RangeObject(descriptor.range);
    case 'array':
      return new ArrayInputSet(descriptor.values);
    case 'sparse':
      return new SparseRangeObject(descriptor);
    case 'multi':
      return MultiRangeObject.fromDescriptor(descriptor);
    case 'distribution':
      return new Distribution(descriptor);
    default:
      throw invalid(`unknown input set kind ${describeValue((descriptor as { kind?: unknown } | undefined)?.kind)}`);
  }
}

function isIterable(x: unknown): x is Iterable<unknown> {
  return typeof x === 'object' && x !== null && typeof (x as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function';
}

function isAsyncIterable(x: unknown): boolean {
  return typeof x === 'object' && x !== null && typeof (x as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator] === 'function';
}

function materialise(iterable: Iterable<unknown>, limit: number): unknown[] {
  const values: unknown[] = [];
  // Throwing inside for...of calls the iterator's return(), so a generator's finally blocks run.
  for (const value of iterable) {
    if (values.length >= limit) {
      throw new CommuneError(ErrorCode.ETOOBIG, `the iterable input set has more than ${limit} elements (maxIterableElements); use a range object or deploy it in parts`);
    }
    values.push(value);
  }
  return values;
}
