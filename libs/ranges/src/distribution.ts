import {
  CommuneError,
  DistributionNameSchema,
  ErrorCode,
  type DistributionInputSetDescriptor,
  type DistributionName,
} from '@commune/protocol';
import { type InputSet, inputKey, sliceIterable } from './input-set.js';
import { checkIndex, describeValue, invalid } from './numbers.js';

/**
 * spec "Distribution Objects": n numbers drawn from a statistical distribution, made by the stats
 * module's `set` creators (normalRNG, random, randomInt; see @commune/client's `stats`).
 *
 * Element i is a pure function of (seed, i): a counter-based generator (splitmix64 over the
 * counter) gives the uniform draws, and a normal draw is one Box–Muller transform of two of them.
 * So nothing is materialised: the scheduler computes any element in O(1) from the descriptor, a
 * job is reproducible from its seed, and a job run with exec() and with localExec() sees the
 * same numbers. (The numbers come from V8's Math.log/Math.cos, which the scheduler and the SDK
 * share; another engine could differ in the last bit of a normal draw.)
 */
export class Distribution implements InputSet, Iterable<number> {
  readonly distribution: DistributionName;
  /** Number of elements (one slice each). */
  readonly n: number;
  /** The creator's arguments after n: [mean, standard deviation] or [min, max]. */
  readonly parameters: readonly [number, number];
  /** 64 bits as 16 lowercase hex digits. */
  readonly seed: string;
  readonly sliceCount: number;
  readonly #draw: (i: number) => number;

  constructor(descriptor: DistributionSpec) {
    if (typeof descriptor !== 'object' || descriptor === null) throw invalid(`a distribution must be {distribution, n, parameters, seed}, not ${describeValue(descriptor)}`);
    const { distribution, n, parameters, seed } = descriptor;
    if (!DistributionNameSchema.safeParse(distribution).success) {
      throw invalid(`unknown distribution ${describeValue(distribution)}; the stats module's set has ${DistributionNameSchema.options.join(', ')}`);
    }
    if (!(Number.isSafeInteger(n) && n >= 0)) throw invalid(`a distribution's size n must be a non-negative integer, not ${describeValue(n)}`);
    if (!Array.isArray(parameters) || parameters.length !== 2 || !parameters.every((p) => typeof p === 'number' && Number.isFinite(p))) {
      throw invalid(`${distribution}(n, a, b) needs two finite numbers after n, not ${describeValue(parameters)}`);
    }
    if (typeof seed !== 'string' || !seedPattern.test(seed)) throw invalid(`a distribution's seed must be 16 lowercase hex digits, not ${describeValue(seed)}`);
    const [a, b] = parameters as [number, number];
    const state = BigInt('0x' + seed);
    this.distribution = distribution;
    this.n = n;
    this.parameters = [a, b];
    this.seed = seed;
    this.sliceCount = n;
    this.#draw = drawFunction(distribution, a, b, state);
  }

  /** What the stats module's set creators call: validates the arguments and fixes the seed (a random one when omitted). */
  static create(distribution: DistributionName, n: unknown, a: unknown, b: unknown, seed?: unknown): Distribution {
    for (const [name, value] of [['first parameter', a], ['second parameter', b]] as const) {
      if (typeof value !== 'number' || !Number.isFinite(value)) throw invalid(`${distribution}(n, a, b): the ${name} must be a finite number, not ${describeValue(value)}`);
    }
    return new Distribution({ distribution, n: n as number, parameters: [a as number, b as number], seed: seedOf(seed) });
  }

  get length(): number {
    return this.n;
  }

  /** Element i (0 <= i < n), O(1). Throws ERANGE outside. */
  datum(i: number): number {
    checkIndex(i, this.n, 'distribution element');
    return this.#draw(i);
  }

  sliceDatum(i: number): number {
    return this.datum(i);
  }

  key(i: number): number {
    return this.datum(i);
  }

  /** The first element equal to `input` (by inputKey). A scan: O(n), as the values follow no order. */
  indexOf(input: unknown): number {
    if (typeof input !== 'number' && typeof input !== 'string') return -1;
    const wanted = inputKey(input);
    for (let i = 0; i < this.n; i++) if (inputKey(this.#draw(i)) === wanted) return i;
    return -1;
  }

  slices(from?: number, to?: number): Iterable<number> {
    return sliceIterable(this, from, to) as Iterable<number>;
  }

  [Symbol.iterator](): Iterator<number> {
    return this.slices()[Symbol.iterator]();
  }

  /** The plain descriptor (toInputSet() turns it back into a Distribution). */
  toJSON(): DistributionSpec {
    return { distribution: this.distribution, n: this.n, parameters: [...this.parameters], seed: this.seed };
  }

  describe(): DistributionInputSetDescriptor {
    return { kind: 'distribution', distribution: this.distribution, n: this.n, parameters: [this.parameters[0], this.parameters[1]], seed: this.seed };
  }
}

/** A distribution as plain data: the wire descriptor without its kind. */
export interface DistributionSpec {
  distribution: DistributionName;
  n: number;
  parameters: [number, number];
  seed: string;
}

const seedPattern = /^[0-9a-f]{16}$/;
const twoTo64 = 1n << 64n;

/**
 * A seed as the descriptor keeps it (16 lowercase hex digits) from what a program may pass:
 * nothing (a fresh random seed), a non-negative integer below 2^64 (number or bigint), or the
 * 16-hex-digit form itself (e.g. copied from `job.inputSet.seed`).
 */
export function seedOf(seed: unknown): string {
  if (seed === undefined) return randomSeed();
  if (typeof seed === 'number') {
    if (!(Number.isSafeInteger(seed) && seed >= 0)) throw invalid(`a seed must be a non-negative integer, not ${describeValue(seed)}`);
    return seed.toString(16).padStart(16, '0');
  }
  if (typeof seed === 'bigint') {
    if (seed < 0n || seed >= twoTo64) throw invalid(`a seed must lie in [0, 2^64), not ${seed}`);
    return seed.toString(16).padStart(16, '0');
  }
  if (typeof seed === 'string' && /^[0-9a-f]{16}$/i.test(seed)) return seed.toLowerCase();
  throw invalid(`a seed is a non-negative integer (number or bigint) or 16 hex digits, not ${describeValue(seed)}`);
}

/** 64 random bits from the platform's CSPRNG (Node and browsers both have globalThis.crypto). */
export function randomSeed(): string {
  const words = globalThis.crypto.getRandomValues(new Uint32Array(2));
  return words[0].toString(16).padStart(8, '0') + words[1].toString(16).padStart(8, '0');
}

const mask64 = twoTo64 - 1n;
/** splitmix64's increment: 2^64 / φ, odd. */
const golden64 = 0x9e3779b97f4a7c15n;

/**
 * Output number `counter` (0-based) of splitmix64 seeded with `seed` (Steele, Lea & Flood 2014, as
 * in Vigna's reference implementation): the state after counter + 1 increments of the golden
 * gamma, put through the finaliser. Any output is computed directly from its counter, in O(1).
 */
export function splitmix64(seed: bigint, counter: bigint): bigint {
  let z = (seed + (counter + 1n) * golden64) & mask64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & mask64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & mask64;
  return z ^ (z >> 31n);
}

const twoTo53 = 2 ** 53;

/** A uniform double in [0, 1): the top 53 bits of splitmix64's output `counter`. */
function uniform(seed: bigint, counter: bigint): number {
  return Number(splitmix64(seed, counter) >> 11n) / twoTo53;
}

function drawFunction(distribution: DistributionName, a: number, b: number, seed: bigint): (i: number) => number {
  switch (distribution) {
    case 'random': {
      // spec: min is the smallest number in the set, max the smallest number above min not in it: [min, max).
      const [min, max] = [a, b];
      if (!(min < max) || !Number.isFinite(max - min)) throw invalid(`random(n, min, max) needs min < max with a finite difference, not min ${min}, max ${max}`);
      const span = max - min;
      return (i) => {
        const value = min + uniform(seed, BigInt(i)) * span;
        // Rounding can land on max itself (only when the span is large against min); keep [min, max).
        return value < max ? value + 0 : min + 0;
      };
    }
    case 'randomInt': {
      const [min, max] = [a, b];
      if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || !(min < max) || !Number.isSafeInteger(max - min)) {
        throw invalid(`randomInt(n, min, max) needs integers min < max (max - min at most 2^53 - 1), not min ${min}, max ${max}`);
      }
      const span = max - min;
      return (i) => min + Math.min(span - 1, Math.floor(uniform(seed, BigInt(i)) * span)) + 0;
    }
    case 'normalRNG': {
      const [mean, standardDeviation] = [a, b];
      if (!(standardDeviation >= 0)) throw invalid(`normalRNG(n, mean, sd) needs sd >= 0, not ${standardDeviation}`);
      // A draw is at most about 8.6 standard deviations out (53-bit uniforms); keep every element finite.
      if (!Number.isFinite(Math.abs(mean) + 9 * standardDeviation)) throw invalid(`normalRNG(n, mean, sd): mean ${mean} and sd ${standardDeviation} give numbers beyond the largest double`);
      return (i) => {
        // Box–Muller on draws 2i and 2i + 1; 1 - u lies in (0, 1], so the logarithm is finite.
        const counter = BigInt(i) * 2n;
        const radius = Math.sqrt(-2 * Math.log(1 - uniform(seed, counter)));
        const angle = 2 * Math.PI * uniform(seed, counter + 1n);
        return mean + standardDeviation * radius * Math.cos(angle) + 0;
      };
    }
    default:
      throw new CommuneError(ErrorCode.EINVAL, `unknown distribution ${describeValue(distribution)}`);
  }
}
