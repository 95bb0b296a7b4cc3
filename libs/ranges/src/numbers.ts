import { BigNumber } from 'bignumber.js';
import { CommuneError, ErrorCode, RangeNumberSchema } from '@commune/protocol';

/** A range bound as the wire form carries it: a finite number or a decimal string. */
export type RangeNumber = number | string;

/**
 * Our own BigNumber constructor. BigNumber.config() is global to a constructor, so cloning keeps
 * another library's (or the user's) configuration from changing range arithmetic. Every operation
 * used here (plus, minus, times, shiftedBy, dividedToIntegerBy) is exact whatever the config says.
 */
export const Big = BigNumber.clone();

/** Parses a range bound, throwing EINVAL that names the offending property. */
export function parseRangeNumber(name: string, value: unknown): BigNumber {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw invalid(`${name} must be a finite number, not ${String(value)}`);
    return new Big(value);
  }
  if (typeof value === 'string') {
    if (!RangeNumberSchema.safeParse(value).success) {
      throw invalid(`${name} must be a decimal number such as "0.1" or "-2e3", not ${JSON.stringify(value)}`);
    }
    return new Big(value);
  }
  throw invalid(`${name} must be a number or a decimal string, not ${describeValue(value)}`);
}

export function invalid(message: string): CommuneError {
  return new CommuneError(ErrorCode.EINVAL, message);
}

/** Throws ERANGE unless `index` is an integer in [0, count). Written to stay cheap on hot paths. */
export function checkIndex(index: number, count: number, what: string): void {
  if (!(index >= 0 && index < count && Math.floor(index) === index)) {
    const valid = count === 0 ? 'there are none' : `valid indices are 0 to ${count - 1}`;
    throw new CommuneError(ErrorCode.ERANGE, `${what} index ${String(index)} is out of range: ${valid}`);
  }
}

/** A short description of a value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
    case 'number':
    case 'boolean':
    case 'bigint':
      return `${typeof value} ${String(value)}`;
    case 'function':
      return 'a function';
    case 'symbol':
      return 'a symbol';
    default: {
      const name = (value as object).constructor?.name;
      return name && name !== 'Object' ? `a ${name}` : 'an object';
    }
  }
}
