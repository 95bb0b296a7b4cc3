import type { InputSetDescriptor } from '@commune/protocol';
import { type InputSet, inputKey, sliceIterable } from './input-set.js';
import { checkIndex, invalid } from './numbers.js';

/**
 * spec compute.for form 4: an input set given by value. Slice i's input is values[i]. The array
 * is held, not copied (toInputSet() snapshots user arrays); do not mutate it afterwards.
 */
export class ArrayInputSet implements InputSet, Iterable<unknown> {
  readonly values: readonly unknown[];
  /** inputKey(value) -> first index, built on the first indexOf(). */
  #index: Map<string, number> | undefined;

  constructor(values: readonly unknown[]) {
    if (!Array.isArray(values)) throw invalid('ArrayInputSet needs an array of values');
    this.values = values;
  }

  get length(): number {
    return this.values.length;
  }

  get sliceCount(): number {
    return this.values.length;
  }

  /** Element i (0 <= i < length); throws ERANGE outside. */
  datum(i: number): unknown {
    checkIndex(i, this.values.length, 'input set element');
    return this.values[i];
  }

  sliceDatum(i: number): unknown {
    return this.datum(i);
  }

  key(i: number): unknown {
    return this.datum(i);
  }

  /** The first index whose value matches `input` (inputKey); O(1) after an O(n) first call. */
  indexOf(input: unknown): number {
    if (!this.#index) {
      this.#index = new Map();
      for (let i = 0; i < this.values.length; i++) {
        const key = inputKey(this.values[i]);
        if (!this.#index.has(key)) this.#index.set(key, i);
      }
    }
    return this.#index.get(inputKey(input)) ?? -1;
  }

  slices(from?: number, to?: number): Iterable<unknown> {
    return sliceIterable(this, from, to);
  }

  [Symbol.iterator](): Iterator<unknown> {
    return this.slices()[Symbol.iterator]();
  }

  describe(): InputSetDescriptor {
    return { kind: 'array', values: this.values as unknown[] };
  }

  toJSON(): unknown[] {
    return this.values as unknown[];
  }
}
