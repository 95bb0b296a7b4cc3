/**
 * How long an idle worker waits before asking for work again after an empty grant.
 *
 * An empty task:request still costs the scheduler CPU (~0.2 ms each, measured in bench/connections.mjs):
 * 50,000 workers asking every second would keep ~10 cores busy doing nothing. So each empty grant in a
 * row doubles the wait, from `initialMs` up to `maxMs`; a grant with work or a 'work:available' hint
 * starts again from `initialMs`. The hint is what keeps latency low when work appears; the capped
 * poll is only the fallback (a hint lost with a replica, or sent to other waiting workers first), so a
 * worker never waits longer than `maxMs` while work is ready.
 *
 * Jitter: each wait is drawn from [half, all] of the current step, so workers that went idle together
 * (a job finished, a replica restarted) do not all ask again in the same instant.
 */
export interface PollBackoffOptions {
  /** The wait after the first empty grant (before jitter). */
  initialMs: number;
  /** The longest wait, however many empty grants came in a row. */
  maxMs: number;
  /** In [0, 1); Math.random by default (tests pass their own). */
  random?: () => number;
}

export class PollBackoff {
  private step: number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;

  constructor(options: PollBackoffOptions) {
    this.initialMs = Math.max(1, options.initialMs);
    this.maxMs = Math.max(this.initialMs, options.maxMs);
    this.random = options.random ?? Math.random;
    this.step = this.initialMs;
  }

  /** The wait after one more empty grant; the next one will be about twice as long (up to maxMs). */
  next(): number {
    const step = this.step;
    this.step = Math.min(this.maxMs, step * 2);
    return Math.round(step / 2 + (step / 2) * this.random());
  }

  /** Work came (or was announced): the next empty grant waits initialMs again. */
  reset(): void {
    this.step = this.initialMs;
  }
}
