import type { RangeObjectDescriptor } from '@commune/protocol';
import { RangeObject } from './range-object.js';
import type { RangeNumber } from './numbers.js';

/** spec "Sparse Range Objects": {sparse: [range object, range object, ...]}. */
export interface SparseRangeDescriptor {
  sparse: Array<RangeObjectDescriptor | RangeObject>;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isRangeNumberLike(x: unknown): x is RangeNumber {
  return typeof x === 'number' || typeof x === 'string';
}

/**
 * Whether x has the shape of a range object: an object whose start and end are numbers or strings
 * and whose step/group, if present, are too. Shape only: whether the values are valid (finite,
 * decimal, step sign) is for the RangeObject constructor to say, with a precise message.
 */
export function isRangeLike(x: unknown): x is RangeObjectDescriptor {
  return (
    isRecord(x) &&
    isRangeNumberLike(x.start) &&
    isRangeNumberLike(x.end) &&
    (x.step === undefined || isRangeNumberLike(x.step)) &&
    (x.group === undefined || typeof x.group === 'number')
  );
}

/** Whether x is shaped like a sparse range object: an object with a `sparse` array. */
export function isSparseRangeLike(x: unknown): x is SparseRangeDescriptor {
  return isRecord(x) && Array.isArray(x.sparse);
}

/** Whether x is shaped like a compute.for form 3 multi-range object: an object with a `ranges` array. */
export function isMultiRangeLike(x: unknown): x is { ranges: unknown[] } {
  return isRecord(x) && Array.isArray(x.ranges);
}

/**
 * Whether x is shaped like a distribution object as plain data ({distribution, n, parameters,
 * seed}, what a Distribution's toJSON() gives). Shape only, strict enough that ordinary data
 * objects do not pass; the Distribution constructor judges the values.
 */
export function isDistributionLike(x: unknown): x is { distribution: string; n: number; parameters: unknown[]; seed: string } {
  return isRecord(x) && typeof x.distribution === 'string' && typeof x.n === 'number' && Array.isArray(x.parameters) && typeof x.seed === 'string';
}

/**
 * compute.for forms 2a (start, end, step) and 2b (start, end; step 1): the range object they
 * stand for. Throws EINVAL as the RangeObject constructor does.
 */
export function formRange(start: RangeNumber, end: RangeNumber, step?: RangeNumber): RangeObject {
  return new RangeObject(start, end, step);
}
