import type { JobEventCursor, JobEventPage } from '@commune/protocol';
import { JobEventOrder, type JobEventOrderHost, type OrderedEvent } from './job-event-order.js';
import { waitFor } from './test-support.js';

const epoch = 'aaaaaaaaaaaaaaaa';
const newEpoch = 'bbbbbbbbbbbbbbbb';
const jobId = 'j_0000000042';

/** An order whose host records what it is asked; `pages` answers fetches in turn. */
function setup(options: Partial<{ maxOutOfOrderEvents: number; holeWaitMs: number; maxFetchAttempts: number; phase: 'fresh' | 'awaiting' }> = {}) {
  const delivered: string[] = [];
  const fetched: JobEventCursor[] = [];
  const pages: Array<JobEventPage | Error> = [];
  let missed = 0;
  const event = (seq: number, at = epoch, label = `${at === epoch ? '' : 'new '}${seq}`): OrderedEvent => ({ cursor: { epoch: at, seq }, deliver: () => delivered.push(label) });
  const host: JobEventOrderHost = {
    fetch: async (since) => {
      fetched.push(since);
      const next = pages.shift();
      if (!next) throw new Error('no page');
      if (next instanceof Error) throw next;
      return next;
    },
    missed: () => {
      missed++;
    },
    fromPage: (entry) => {
      const cursor = entry.event.cursor!;
      return event(cursor.seq, cursor.epoch, entry.name === 'job:console' ? `${cursor.epoch === epoch ? '' : 'new '}${cursor.seq}` : 'other');
    },
  };
  const order = new JobEventOrder(host, { maxOutOfOrderEvents: 100, holeWaitMs: 20, maxFetchAttempts: 2, ...options }, options.phase ?? 'fresh');
  return { order, delivered, fetched, pages, event, missedCount: () => missed };
}

/** A page of console events `seqs` in `at`. */
function pageOf(seqs: number[], last: number, overrides: Partial<JobEventPage> = {}, at = epoch): JobEventPage {
  return {
    cursor: { epoch: at, seq: last },
    gap: false,
    more: false,
    events: seqs.map((seq) => ({ name: 'job:console' as const, event: { jobId, entries: [], cursor: { epoch: at, seq } } })),
    ...overrides,
  };
}

describe(JobEventOrder.name, () => {
  it('delivers events that came out of order in sequence order, without asking the log when the missing one arrives in time', async () => {
    const { order, delivered, fetched, event } = setup();
    for (const seq of [1, 3, 4, 2, 5]) order.offer(event(seq));
    expect(delivered).toEqual(['1', '2', '3', '4', '5']);
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(fetched).toEqual([]);
  });

  it('drops copies of events already delivered (a replay and its live event, seq <= delivered)', () => {
    const { order, delivered, event } = setup();
    for (const seq of [1, 2, 2, 1, 3, 3]) order.offer(event(seq));
    expect(delivered).toEqual(['1', '2', '3']);
  });

  it('fetches a hole that does not arrive, after holeWaitMs, from the last event delivered', async () => {
    const { order, delivered, fetched, pages, event, missedCount } = setup();
    order.offer(event(1));
    order.offer(event(3));
    order.offer(event(4));
    expect(delivered).toEqual(['1']);
    pages.push(pageOf([2, 3], 4));
    await waitFor('the hole to be filled', () => delivered.length === 4);
    expect(fetched).toEqual([{ epoch, seq: 1 }]);
    expect(delivered).toEqual(['1', '2', '3', '4']);
    expect(missedCount()).toBe(0);
    order.close();
  });

  it('on a gap, reports the loss once and goes on from the events the log still has, never delivering made-up ones', async () => {
    const { order, delivered, pages, event, missedCount } = setup();
    order.offer(event(1));
    order.offer(event(9)); // 2..8 were trimmed from the log
    pages.push(pageOf([7, 8, 9], 9, { gap: true }));
    await waitFor('the page after the gap', () => delivered.length === 4);
    expect(delivered).toEqual(['1', '7', '8', '9']);
    expect(missedCount()).toBe(1);
    order.offer(event(10));
    expect(delivered.at(-1)).toBe('10');
  });

  it('an event of a new epoch (Redis lost the log) makes it ask at once; the gap is reported and the new epoch delivered in order', async () => {
    const { order, delivered, fetched, pages, event, missedCount } = setup({ holeWaitMs: 60_000 });
    order.offer(event(1));
    order.offer(event(2));
    pages.push(pageOf([1, 2], 3, { gap: true }, newEpoch));
    order.offer(event(3, newEpoch)); // the log was begun again: seq 3 of a new epoch is no copy of our seq 3... nor a successor
    await waitFor('the new epoch', () => delivered.length === 5);
    expect(fetched).toEqual([{ epoch, seq: 2 }]);
    expect(delivered).toEqual(['1', '2', 'new 1', 'new 2', 'new 3']);
    expect(missedCount()).toBe(1);
    expect(order.position()).toEqual({ epoch: newEpoch, seq: 3 });
  });

  it('holds at most maxOutOfOrderEvents; the ones it dropped come from the log, each once', async () => {
    const { order, delivered, pages, event } = setup({ maxOutOfOrderEvents: 3 });
    order.offer(event(1));
    for (let seq = 3; seq <= 10; seq++) order.offer(event(seq));
    pages.push(pageOf([2, 3, 4, 5, 6, 7, 8, 9, 10], 10));
    await waitFor('every event', () => delivered.length === 10);
    expect(delivered).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10']);
  });

  it('fetches further pages while the log says more', async () => {
    const { order, delivered, fetched, pages } = setup({ phase: 'awaiting' });
    const token = order.suspend();
    pages.push(pageOf([4, 5], 6));
    await order.catchUp(pageOf([1, 2, 3], 6, { more: true }), false, token);
    expect(fetched).toEqual([{ epoch, seq: 3 }]);
    expect(delivered).toEqual(['1', '2', '3', '4', '5']);
  });

  it('holds live events during a catch-up and delivers them after the missed ones; a catch-up of an older subscribe is ignored', async () => {
    const { order, delivered, event } = setup();
    order.offer(event(1));
    const stale = order.suspend();
    const token = order.suspend();
    order.offer(event(4));
    order.offer(event(3));
    await order.catchUp(pageOf([1, 2, 3, 4, 5], 5, { more: false }), false, stale); // ignored
    expect(delivered).toEqual(['1']);
    await order.catchUp(pageOf([2, 3], 3), false, token);
    expect(delivered).toEqual(['1', '2', '3', '4']);
  });

  it('after fetches failed maxFetchAttempts times in a row, reports the loss and delivers what it holds, in order', async () => {
    const { order, delivered, pages, event, missedCount } = setup({ maxFetchAttempts: 2 });
    order.offer(event(1));
    order.offer(event(4));
    order.offer(event(3));
    pages.push(new Error('socket closed'), new Error('socket closed'));
    await waitFor('giving up on the hole', () => delivered.length === 3, 2000);
    expect(delivered).toEqual(['1', '3', '4']);
    expect(missedCount()).toBe(1);
  });

  it('delivers an event without a cursor (the scheduler could not log it) as it comes', () => {
    const { order, delivered } = setup({ phase: 'awaiting' });
    order.offer({ deliver: () => delivered.push('unlogged') });
    expect(delivered).toEqual(['unlogged']);
  });

  it('a follower starts from where the subscribe says the log stands: nothing before it, everything after it', () => {
    const { order, delivered, event } = setup({ phase: 'awaiting' });
    order.offer(event(8)); // arrived before the subscribe's reply
    order.resume({ epoch, seq: 7 });
    order.offer(event(7));
    order.offer(event(9));
    expect(delivered).toEqual(['8', '9']);
  });
});
