import type { BigNumber } from 'bignumber.js';
import { CommuneError, ErrorCode, type InputSetDescriptor, type RangeObjectDescriptor } from '@commune/protocol';
import { type InputSet, inputKey, sliceIterable } from './input-set.js';
import { Big, checkIndex, describeValue, invalid, parseRangeNumber, type RangeNumber } from './numbers.js';

/** 10^22 is the largest power of ten a double holds exactly; the fast path divides by 10^d. */
const maxExactPowerOfTen = 22;

/**
 * spec "Range Objects": the numbers start, start + step, start + 2·step, ... up to end, computed
 * exactly (BigNumber semantics) and never materialised: element i is computed on demand.
 *
 * - step defaults to 1; a descending range (end < start) needs a negative step.
 * - When end - start is not a multiple of step, the last element is the last one not past end
 *   ({start: 0, end: 1000, step: 3} ends at 999).
 * - With `group` set (even to 1) each slice's input is an array of up to `group` consecutive
 *   elements; the last group may be shorter.
 *
 * Elements are returned as plain JS numbers: the decimal value start + i·step, rounded once to the
 * nearest double, so {start: 0, end: 1, step: 0.1} yields 0.3, not 0.30000000000000004.
 */
export class RangeObject implements InputSet, Iterable<unknown> {
  /** The descriptor's values, as given. */
  readonly start: RangeNumber;
  readonly end: RangeNumber;
  /** As given; undefined means the default step of 1. */
  readonly step: RangeNumber | undefined;
  readonly group: number | undefined;
  /** Number of elements in the range. */
  readonly length: number;
  /** Number of slices: ceil(length / group) when grouped, else length. */
  readonly sliceCount: number;

  // Fast path: when start, step and every element are integers after scaling by 10^d (d = the
  // larger number of decimal places of start and step) and all of them are safe integers,
  // element i is (scaledStart + i·scaledStep) / 10^d. The numerator is an exact integer and one
  // IEEE division is correctly rounded, so this equals the BigNumber result converted to a
  // number, without allocating anything per datum.
  readonly #fast: boolean;
  readonly #scaledStart: number;
  readonly #scaledStep: number;
  /** 10^d, or 1 when start and step are integers (then no division is done). */
  readonly #divisor: number;
  // Slow path (huge or very precise values): BigNumber per datum.
  readonly #bigStart: BigNumber;
  readonly #bigStep: BigNumber;

  constructor(descriptor: RangeObjectDescriptor);
  constructor(start: RangeNumber, end: RangeNumber, step?: RangeNumber, group?: number);
  constructor(startOrDescriptor: RangeNumber | RangeObjectDescriptor, endArg?: RangeNumber, stepArg?: RangeNumber, groupArg?: number) {
    let raw: { start: unknown; end: unknown; step: unknown; group: unknown };
    if (typeof startOrDescriptor === 'object' && startOrDescriptor !== null) {
      if (Array.isArray(startOrDescriptor)) throw invalid('a range object must be {start, end, step?, group?}, not an array');
      const d = startOrDescriptor as Record<string, unknown>;
      raw = { start: d.start, end: d.end, step: d.step, group: d.group };
    } else {
      raw = { start: startOrDescriptor, end: endArg, step: stepArg, group: groupArg };
    }

    const start = parseRangeNumber('range start', raw.start);
    const end = parseRangeNumber('range end', raw.end);
    const step = raw.step === undefined ? new Big(1) : parseRangeNumber('range step', raw.step);
    if (step.isZero()) throw invalid('range step must not be 0');
    if (raw.group !== undefined && !(Number.isSafeInteger(raw.group) && (raw.group as number) > 0)) {
      throw invalid(`range group must be a positive integer, not ${describeValue(raw.group)}`);
    }

    // Every element lies between start and end, so this keeps every datum a finite number.
    for (const [name, value] of [['start', start], ['end', end]] as const) {
      if (!Number.isFinite(value.toNumber())) throw invalid(`range ${name} ${value.toExponential(3)} is beyond the largest JavaScript number`);
    }

    const span = end.minus(start);
    if (!span.isZero() && span.isNegative() !== step.isNegative()) {
      const given = `{start: ${String(raw.start)}, end: ${String(raw.end)}}`;
      throw invalid(
        span.isNegative()
          ? `range ${given} descends, so it needs a negative step (step is ${raw.step === undefined ? 'the default 1' : String(raw.step)})`
          : `range ${given} ascends, so its step must be positive, not ${String(raw.step)}`,
      );
    }

    // The signs agree, so the quotient is >= 0 and truncation is floor: this is the step-overflow
    // rule (the last element is the last one not past end).
    const count = span.dividedToIntegerBy(step).plus(1);
    if (count.isGreaterThan(Number.MAX_SAFE_INTEGER)) {
      throw new CommuneError(ErrorCode.ETOOBIG, `range has ${count.toExponential(3)} elements; at most ${Number.MAX_SAFE_INTEGER} are supported`);
    }
    const last = start.plus(step.times(count.minus(1)));

    this.start = raw.start as RangeNumber;
    this.end = raw.end as RangeNumber;
    this.step = raw.step as RangeNumber | undefined;
    this.group = raw.group as number | undefined;
    this.length = count.toNumber();
    this.sliceCount = this.group === undefined ? this.length : Math.ceil(this.length / this.group);
    this.#bigStart = start;
    this.#bigStep = step;

    const places = Math.max(start.decimalPlaces() ?? 0, step.decimalPlaces() ?? 0);
    const scaledStart = start.shiftedBy(places);
    const scaledStep = step.shiftedBy(places);
    const scaledLast = last.shiftedBy(places);
    const isSafe = (n: BigNumber) => n.abs().isLessThanOrEqualTo(Number.MAX_SAFE_INTEGER);
    // |last - start| bounds |i·step| for every i, so the product in #valueAt stays exact too.
    this.#fast = places <= maxExactPowerOfTen && isSafe(scaledStart) && isSafe(scaledLast) && isSafe(scaledLast.minus(scaledStart));
    // `+ 0` turns -0 into 0: the API does not distinguish them (spec "Range Objects").
    this.#scaledStart = scaledStart.toNumber() + 0;
    this.#scaledStep = scaledStep.toNumber();
    this.#divisor = Number(`1e${places}`);
  }

  /** Element i of the range (0 <= i < length). O(1). Throws ERANGE outside the range. */
  datum(i: number): number {
    checkIndex(i, this.length, 'range element');
    return this.#valueAt(i);
  }

  /** Slice i's input: a number, or with `group` set an array of up to `group` elements. */
  sliceDatum(i: number): number | number[] {
    if (this.group === undefined) return this.datum(i);
    checkIndex(i, this.sliceCount, 'slice');
    const first = i * this.group;
    const size = Math.min(this.group, this.length - first);
    const data = new Array<number>(size);
    for (let j = 0; j < size; j++) data[j] = this.#valueAt(first + j);
    return data;
  }

  /** The input-set element of slice i: the same as sliceDatum(i). */
  key(i: number): number | number[] {
    return this.sliceDatum(i);
  }

  /**
   * The slice whose key matches `input`, found without walking the range: (input - start) / step
   * in exact decimal arithmetic (for a grouped range, from the group's first element), then
   * confirmed against that slice's datum. -1 when `input` is not in the range. O(1).
   */
  indexOf(input: unknown): number {
    const first = this.group !== undefined ? (Array.isArray(input) ? (input as unknown[])[0] : undefined) : input;
    if (typeof first !== 'number' && typeof first !== 'string') return -1;
    let value: BigNumber;
    try {
      value = new Big(first);
    } catch {
      return -1; // not a number, so not in a numeric range
    }
    if (!value.isFinite()) return -1;
    const offset = value.minus(this.#bigStart);
    if (!offset.modulo(this.#bigStep).isZero()) return -1;
    const position = offset.dividedToIntegerBy(this.#bigStep);
    if (position.isLessThan(0) || !position.modulo(this.group ?? 1).isZero()) return -1;
    const index = position.dividedToIntegerBy(this.group ?? 1);
    if (!index.isLessThan(this.sliceCount)) return -1;
    const slice = index.toNumber();
    return inputKey(this.sliceDatum(slice)) === inputKey(input) ? slice : -1;
  }

  slices(from?: number, to?: number): Iterable<number | number[]> {
    return sliceIterable(this, from, to) as Iterable<number | number[]>;
  }

  [Symbol.iterator](): Iterator<number | number[]> {
    return this.slices()[Symbol.iterator]();
  }

  /** The descriptor, numbers kept as given (decimal strings stay strings). */
  toJSON(): RangeObjectDescriptor {
    const descriptor: RangeObjectDescriptor = { start: this.start, end: this.end };
    if (this.step !== undefined) descriptor.step = this.step;
    if (this.group !== undefined) descriptor.group = this.group;
    return descriptor;
  }

  describe(): InputSetDescriptor {
    return { kind: 'range', range: this.toJSON() };
  }

  #valueAt(i: number): number {
    if (this.#fast) {
      const scaled = this.#scaledStart + i * this.#scaledStep;
      return this.#divisor === 1 ? scaled : scaled / this.#divisor;
    }
    const value = this.#bigStart.plus(this.#bigStep.times(i)).toNumber();
    return value === 0 ? 0 : value;
  }
}
