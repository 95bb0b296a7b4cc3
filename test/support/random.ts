/**
 * Mulberry32: a small seeded PRNG for tests whose random data must be replayable (CONVENTIONS.md:
 * the seed is printed on failure, and TEST_SEED replays it where a suite reads it).
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
