import { Distribution } from '@commune/ranges';

/**
 * spec "Distribution Objects": the stats module. DCP programs write `require('stats')`; here it is
 * `require('@commune/client').stats`, and `compute.stats` is the same object.
 *
 * ```js
 * const job = compute.for(stats.set.normalRNG(10, 100, 0.2), (x) => progress(1) && x);
 * ```
 *
 * Each creator takes an optional last argument, `seed` (a non-negative integer, a bigint below
 * 2^64, or 16 hex digits). Without one a random seed is chosen; either way it is kept in the
 * distribution (`distribution.seed`, and the job's input-set descriptor), so the same
 * distribution object, or one made again with its seed, gives the same numbers in exec() and in
 * localExec(). The numbers are computed where they are needed (on the scheduler, in O(1) each),
 * never sent as a list.
 */
export interface StatsSet {
  /** n numbers from a normal distribution with the given mean (default 0) and standard deviation (default 1, at least 0). */
  normalRNG(n: number, mean?: number, standardDeviation?: number, seed?: number | bigint | string): Distribution;
  /** n numbers uniformly distributed in [min, max) (min < max). */
  random(n: number, min: number, max: number, seed?: number | bigint | string): Distribution;
  /** n integers uniformly distributed in [min, max) (integers, min < max). */
  randomInt(n: number, min: number, max: number, seed?: number | bigint | string): Distribution;
}

export interface Stats {
  readonly set: StatsSet;
}

const set: StatsSet = Object.freeze({
  normalRNG: (n: number, mean = 0, standardDeviation = 1, seed?: number | bigint | string) => Distribution.create('normalRNG', n, mean, standardDeviation, seed),
  random: (n: number, min: number, max: number, seed?: number | bigint | string) => Distribution.create('random', n, min, max, seed),
  randomInt: (n: number, min: number, max: number, seed?: number | bigint | string) => Distribution.create('randomInt', n, min, max, seed),
});

export const stats: Stats = Object.freeze({ set });
