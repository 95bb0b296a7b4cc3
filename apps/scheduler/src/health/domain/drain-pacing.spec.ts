import { describe, expect, it } from '@jest/globals';
import { disconnectsDue } from './drain-pacing.js';

describe(disconnectsDue.name, () => {
  it('spreads sockets evenly over the ticks left in the window', () => {
    // 4,000 sockets over 4 s in 50 ms ticks: 80 ticks, 50 a tick.
    expect(disconnectsDue(4000, 0, 4000, 50)).toBe(50);
    // Halfway through with 2,000 left: still 50 a tick.
    expect(disconnectsDue(2000, 2000, 4000, 50)).toBe(50);
  });

  it('hands a few sockets over at once', () => {
    expect(disconnectsDue(2, 0, 4000, 50)).toBe(1);
    expect(disconnectsDue(1, 50, 4000, 50)).toBe(1);
  });

  it('disconnects everything left once the window is over, and nothing when nothing is left', () => {
    expect(disconnectsDue(37, 5000, 4000, 50)).toBe(37);
    expect(disconnectsDue(37, 3990, 4000, 50)).toBe(37);
    expect(disconnectsDue(0, 0, 4000, 50)).toBe(0);
  });

  it('takes newcomers into the count of the ticks that are left', () => {
    // 10 sockets, then 30 more arrived: the 40 share the remaining 10 ticks.
    expect(disconnectsDue(40, 3500, 4000, 50)).toBe(4);
  });
});
