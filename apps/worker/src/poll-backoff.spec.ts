import { describe, expect, it } from '@jest/globals';
import { PollBackoff } from './poll-backoff.js';

describe(PollBackoff.name, () => {
  it('doubles the wait on each empty grant up to maxMs, jittered within [half, all] of the step', () => {
    const top = new PollBackoff({ initialMs: 1000, maxMs: 60_000, random: () => 0.999_999 });
    expect(Array.from({ length: 9 }, () => top.next())).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    const bottom = new PollBackoff({ initialMs: 1000, maxMs: 60_000, random: () => 0 });
    expect(Array.from({ length: 8 }, () => bottom.next())).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
  });

  it('starts again from initialMs after reset (a grant with work, or a work:available hint)', () => {
    const backoff = new PollBackoff({ initialMs: 1000, maxMs: 60_000, random: () => 0.999_999 });
    for (let i = 0; i < 10; i++) backoff.next();
    expect(backoff.next()).toBe(60_000);
    backoff.reset();
    expect(backoff.next()).toBe(1000);
    expect(backoff.next()).toBe(2000);
  });

  it('spreads workers that went idle together, and never exceeds maxMs', () => {
    const waits = Array.from({ length: 1000 }, () => {
      const backoff = new PollBackoff({ initialMs: 1000, maxMs: 60_000 });
      for (let i = 0; i < 20; i++) backoff.next();
      return backoff.next();
    });
    expect(Math.max(...waits)).toBeLessThanOrEqual(60_000);
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(30_000);
    expect(new Set(waits).size).toBeGreaterThan(100);
  });

  it('keeps maxMs at least initialMs', () => {
    const backoff = new PollBackoff({ initialMs: 5000, maxMs: 10, random: () => 0.999_999 });
    expect([backoff.next(), backoff.next()]).toEqual([5000, 5000]);
  });
});
