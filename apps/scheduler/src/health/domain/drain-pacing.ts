/**
 * How many of the `remaining` sockets a draining replica disconnects on the tick at `nowMs` so that
 * all are gone by `windowEndMs`, spread evenly over the ticks left (every `tickMs`): a replica with
 * thousands of workers hands them to the others a few at a time instead of all in one burst, and one
 * with a few hands them over at once. Past the window, everything left goes on the next tick.
 */
export function disconnectsDue(remaining: number, nowMs: number, windowEndMs: number, tickMs: number): number {
  if (remaining <= 0) return 0;
  const ticksLeft = Math.max(1, Math.ceil((windowEndMs - nowMs) / Math.max(1, tickMs)));
  return Math.ceil(remaining / ticksLeft);
}
