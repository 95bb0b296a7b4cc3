import type { JobEventCursor, JobEventPage } from '@commune/protocol';

/**
 * Puts one job's events in the order of the job's event log before they reach its handles.
 *
 * Every job event carries a cursor (the log's epoch and the event's sequence number, contiguous
 * per job whichever scheduler replica sent it). Events are delivered strictly in sequence order:
 * a copy of one already delivered is dropped; one that comes early is held (at most
 * maxOutOfOrderEvents) while the one before it is awaited for holeWaitMs, after which the hole is
 * fetched from the log (`job:events`). A page that says `gap` (the scheduler's Redis lost the log,
 * or the missed events were trimmed) is reported to the connection, which reads the job's status
 * and results again; the events the page does carry are then delivered from there, never made up.
 */

/** What delivers one event to the job's handles. */
export type Deliver = () => void;

/** An event as it arrived: its cursor (absent when the scheduler could not log it) and how to deliver it. */
export interface OrderedEvent {
  cursor?: JobEventCursor;
  deliver: Deliver;
}

export interface JobEventOrderHost {
  /** The page of the job's log after `since` (job:events on the connection's socket). */
  fetch(since: JobEventCursor): Promise<JobEventPage>;
  /** Events were lost (a page said `gap`, or holes could not be fetched): read the job's status and results again. */
  missed(): void;
  /** Turns a logged event of a page into an OrderedEvent (parsed as a live one would be); null when it is not one. */
  fromPage(entry: JobEventPage['events'][number]): OrderedEvent | null;
}

export interface JobEventOrderOptions {
  /** Events held while an earlier one is awaited or fetched; past this, later ones are dropped (the log has them). */
  maxOutOfOrderEvents: number;
  /** How long an early event waits for the one before it before that hole is fetched. */
  holeWaitMs: number;
  /** Fetches of one hole that may fail in a row before its events count as missed. */
  maxFetchAttempts: number;
}

/**
 * Where the order stands:
 * - fresh: a job this connection deployed: its log begins at seq 1 in whatever epoch comes first;
 * - adopt: nothing is known (a scheduler that sent no cursor): the next event's place is taken as it is;
 * - known: `epoch` and `delivered` (the last sequence number delivered) are known;
 * - awaiting: a subscribe is in flight; events are held until its reply says where the log stands.
 */
type Phase = 'fresh' | 'adopt' | 'known' | 'awaiting';

export class JobEventOrder {
  private phase: Phase;
  private epoch: string | null = null;
  private delivered = 0;
  /** Early events, by sequence number (with their epoch, which may be a newer one). */
  private readonly held = new Map<string, OrderedEvent & { cursor: JobEventCursor }>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private fetching = false;
  private failures = 0;
  /** Bumped by every reset: a fetch answered after one is ignored. */
  private generation = 0;
  private closed = false;
  /** Epochs this order has left (after a gap): a late copy from one of them is stale, never a new event. */
  private readonly retired: string[] = [];

  constructor(private readonly host: JobEventOrderHost, private readonly options: JobEventOrderOptions, phase: 'fresh' | 'awaiting') {
    this.phase = phase;
  }

  /** The cursor of the last event delivered (what a reconnect asks to resume from); undefined when none is known. */
  position(): JobEventCursor | undefined {
    return this.epoch === null || this.phase === 'adopt' ? undefined : { epoch: this.epoch, seq: this.delivered };
  }

  /** A live event (or one held before the job's handle attached). */
  offer(event: OrderedEvent): void {
    if (this.closed) return;
    const cursor = event.cursor;
    if (!cursor) {
      event.deliver(); // the scheduler could not log it: as it comes, as before event logs
      return;
    }
    if (this.retired.includes(cursor.epoch)) return;
    if (this.phase === 'fresh' || this.phase === 'adopt') {
      this.epoch = cursor.epoch;
      this.delivered = this.phase === 'fresh' ? 0 : cursor.seq - 1;
      this.phase = 'known';
    }
    if (this.phase === 'known' && cursor.epoch === this.epoch) {
      if (cursor.seq <= this.delivered) return; // a copy (a replay and its live event, or a second replica)
      if (cursor.seq === this.delivered + 1 && !this.fetching) {
        this.deliver(event);
        this.drain();
        return;
      }
    }
    this.hold(event as OrderedEvent & { cursor: JobEventCursor });
    if (this.phase === 'known' && !this.fetching) {
      // Another epoch: the log was begun again (Redis lost it); ask at once what became of ours.
      if (cursor.epoch !== this.epoch) void this.fetchHole();
      else this.armTimer();
    }
  }

  /**
   * A subscribe is on its way: hold events until its reply says where the log stands (resume() /
   * catchUp() with the token returned here; those of an older suspend are ignored).
   */
  suspend(): number {
    this.generation++;
    this.fetching = false;
    this.clearTimer();
    this.phase = 'awaiting';
    return this.generation;
  }

  /**
   * The log stands at `cursor` (a subscribe without `since`): deliver what comes after it. Without
   * one (an old scheduler, a log that could not be read), the next event's place is taken as it is.
   */
  resume(cursor: JobEventCursor | null | undefined, token = this.generation): void {
    if (this.closed || token !== this.generation) return;
    if (cursor) {
      this.epoch = cursor.epoch;
      this.delivered = cursor.seq;
      this.phase = 'known';
    } else if (cursor === null && this.phase === 'awaiting') {
      // Redis holds no log for the job now: its next one begins at seq 1.
      this.epoch = null;
      this.phase = 'fresh';
    } else if (this.epoch === null || this.phase === 'awaiting') {
      this.phase = 'adopt';
    }
    this.replayHeld();
  }

  /**
   * A page of the log (a subscribe with `since`, or a fetched hole): its events in order, then the
   * next pages while it says `more`. `reportGap: false` when the caller tells the gap itself (a reconnect).
   * Resolves once the order is caught up (or gave up: then `missed` was reported).
   */
  async catchUp(page: JobEventPage, reportGap = true, token = this.generation): Promise<void> {
    if (this.closed || token !== this.generation) return;
    const generation = this.generation;
    this.fetching = true;
    try {
      for (let current = page; ; ) {
        this.apply(current, reportGap);
        if (!current.more || this.closed || generation !== this.generation) break;
        current = await this.host.fetch({ epoch: this.epoch!, seq: this.delivered });
        if (generation !== this.generation) return;
        reportGap = true;
      }
    } catch {
      if (generation !== this.generation) return;
      // The rest of the log could not be read now: what is held waits for the next try.
      this.failures++;
    } finally {
      if (generation === this.generation) this.fetching = false;
    }
    if (generation !== this.generation || this.closed) return;
    this.replayHeld();
  }

  close(): void {
    this.closed = true;
    this.generation++;
    this.clearTimer();
    this.held.clear();
  }

  private apply(page: JobEventPage, reportGap: boolean): void {
    if (this.closed) return;
    if (page.gap && reportGap) this.host.missed();
    if (!page.gap && this.epoch === null && page.cursor) {
      this.epoch = page.cursor.epoch; // nothing was delivered yet: the page starts the log
      this.delivered = 0;
    }
    if (page.gap) {
      // Delivered from the page's first event on, or from where the log stands when it carries none.
      this.retire(page.cursor?.epoch ?? null);
      this.epoch = page.cursor?.epoch ?? null;
      this.delivered = page.events[0]?.event.cursor ? page.events[0].event.cursor.seq - 1 : (page.cursor?.seq ?? 0);
    }
    this.phase = this.epoch === null ? 'fresh' : 'known';
    for (const entry of page.events) {
      const event = this.host.fromPage(entry);
      const cursor = event?.cursor;
      if (!event || !cursor || cursor.epoch !== this.epoch || cursor.seq <= this.delivered) continue;
      // The page is the log itself: a sequence number it skips is one the log no longer has.
      this.deliver(event);
    }
  }

  /** Leaves the current epoch for `next` (a few are remembered: the held ones and copies still on the way). */
  private retire(next: string | null): void {
    if (this.epoch === null || this.epoch === next || this.retired.includes(this.epoch)) return;
    this.retired.push(this.epoch);
    if (this.retired.length > 8) this.retired.shift();
    for (const [key, event] of this.held) if (event.cursor.epoch === this.epoch) this.held.delete(key);
  }

  private deliver(event: OrderedEvent): void {
    this.delivered = event.cursor!.seq;
    this.failures = 0;
    event.deliver();
  }

  private hold(event: OrderedEvent & { cursor: JobEventCursor }): void {
    const key = `${event.cursor.epoch}:${event.cursor.seq}`;
    if (this.held.has(key)) return;
    // Full: later events are dropped here; the log still has them, and the next fetch brings them.
    if (this.held.size >= this.options.maxOutOfOrderEvents) return;
    this.held.set(key, event);
  }

  /** Delivers the held events that now follow in order; arms the hole timer when some still wait. */
  private drain(): void {
    for (;;) {
      const next = this.epoch === null ? undefined : this.held.get(`${this.epoch}:${this.delivered + 1}`);
      if (!next) break;
      this.held.delete(`${this.epoch}:${this.delivered + 1}`);
      this.deliver(next);
    }
    for (const [key, event] of this.held) {
      if (event.cursor.epoch === this.epoch && event.cursor.seq <= this.delivered) this.held.delete(key);
    }
    if (this.held.size === 0) {
      this.clearTimer();
      return;
    }
    if ([...this.held.values()].some((event) => event.cursor.epoch !== this.epoch)) void this.fetchHole();
    else this.armTimer();
  }

  /** After a reset: what was held goes through offer() again, in sequence order. */
  private replayHeld(): void {
    const held = [...this.held.values()].sort((a, b) => a.cursor.seq - b.cursor.seq);
    this.held.clear();
    this.clearTimer();
    for (const event of held) this.offer(event);
  }

  private armTimer(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.fetchHole();
    }, this.options.holeWaitMs);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Fetches what follows the last delivered event; after maxFetchAttempts failures in a row, the held events go out as they are and the loss is reported. */
  private async fetchHole(): Promise<void> {
    if (this.fetching || this.closed || this.phase !== 'known' || this.epoch === null) return;
    this.clearTimer();
    const generation = this.generation;
    this.fetching = true;
    let page: JobEventPage;
    try {
      page = await this.host.fetch({ epoch: this.epoch, seq: this.delivered });
    } catch {
      if (generation !== this.generation) return;
      this.fetching = false;
      if (++this.failures < this.options.maxFetchAttempts) {
        this.armTimer();
        return;
      }
      this.giveUp();
      return;
    }
    if (generation !== this.generation) return;
    this.fetching = false;
    await this.catchUp(page);
  }

  /** The holes could not be fetched: report the loss and deliver what is held, in order, from where it starts. */
  private giveUp(): void {
    this.failures = 0;
    this.host.missed();
    // Ours first, then a newer epoch's, each in sequence order.
    const rank = (event: OrderedEvent & { cursor: JobEventCursor }) => (event.cursor.epoch === this.epoch ? 0 : 1);
    const held = [...this.held.values()].sort((a, b) => rank(a) - rank(b) || a.cursor.seq - b.cursor.seq);
    this.held.clear();
    for (const event of held) {
      if (event.cursor.epoch !== this.epoch) {
        this.retire(event.cursor.epoch);
        this.epoch = event.cursor.epoch;
        this.delivered = event.cursor.seq - 1;
      }
      if (event.cursor.seq > this.delivered) this.deliver(event);
    }
  }
}
