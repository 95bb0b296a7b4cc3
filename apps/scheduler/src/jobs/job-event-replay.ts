import { Injectable, Logger } from '@nestjs/common';
import { JobEventEntrySchema, JobEventLimits, type JobEventCursor, type JobEventEntry, type JobEventPage, type SliceResult } from '@commune/protocol';
import { JobEventLog } from './job-event-log.js';
import type { LoggedEvent } from './job-events.js';
import { JobsRepository } from './jobs.repository.js';

/** A logged entry, parsed. */
interface Logged {
  seq: number;
  event: LoggedEvent;
  bytes: number;
}

/**
 * Pages of a job's event log for one socket, as the events went out live: each with its cursor,
 * results events with their values read back from PostgreSQL for a socket in the job's results
 * room, and with none (the event only keeps its place) for any other.
 */
@Injectable()
export class JobEventReplay {
  private readonly logger = new Logger(JobEventReplay.name);

  constructor(private readonly log: JobEventLog, private readonly jobs: JobsRepository) {}

  /**
   * The events after `since` (at most JobEventLimits.maxEventsPerPage, about maxPageBytes), or,
   * without `since`, only where the log stands now.
   */
  async page(jobId: string, since: JobEventCursor | undefined, withResults: boolean): Promise<JobEventPage> {
    const read = await this.log.read(jobId, since);
    if (since === undefined || read.cursor === null) return { cursor: read.cursor, gap: read.gap, events: [], more: false };
    const epoch = read.cursor.epoch;
    const logged = this.parse(jobId, read.entries);
    const values = withResults ? await this.resultValues(jobId, logged) : new Map<number, SliceResult[]>();
    const events: JobEventEntry[] = [];
    let gap = read.gap;
    let bytes = 0;
    let lastSeq: number | null = null;
    for (const entry of logged) {
      if (entry.event.n === 'job:results' && withResults && !values.has(entry.seq)) break; // past the page's byte budget
      const results = values.get(entry.seq);
      const size = results ? JSON.stringify(results).length : entry.bytes;
      if (events.length > 0 && bytes + size > JobEventLimits.maxPageBytes) break;
      lastSeq = entry.seq;
      bytes += size;
      const built = JobEventEntrySchema.safeParse(this.entryOf(jobId, epoch, entry, results ?? []));
      if (built.success) {
        events.push(built.data);
        continue;
      }
      // Only this scheduler writes the log: an entry it cannot read back is a bug, reported to the
      // client as the gap it is (never skipped silently).
      this.logger.warn(`job ${jobId}: event ${entry.seq} in the log is malformed (${built.error.message.slice(0, 200)})`);
      gap = true;
    }
    return { cursor: read.cursor, gap, events, more: lastSeq !== null && lastSeq < read.cursor.seq };
  }

  private parse(jobId: string, entries: Array<{ seq: number; text: string }>): Logged[] {
    const parsed: Logged[] = [];
    for (const { seq, text } of entries) {
      try {
        parsed.push({ seq, event: JSON.parse(text) as LoggedEvent, bytes: text.length });
      } catch {
        this.logger.warn(`job ${jobId}: event ${seq} in the log is not JSON`);
        parsed.push({ seq, event: { n: 'job:console' }, bytes: text.length }); // fails the schema below: reported as a gap
      }
    }
    return parsed;
  }

  private entryOf(jobId: string, epoch: string, entry: Logged, results: SliceResult[]): unknown {
    const cursor = { epoch, seq: entry.seq };
    const { n: name, d: data } = entry.event;
    if (name === 'job:results') return { name, event: { jobId, results, cursor } };
    return { name, event: { ...data, jobId, cursor } };
  }

  /**
   * The values of the page's results events, per event, read in one query up to the page's byte
   * budget: an event whose values did not all fit is left out (the page ends before it). The
   * first event is always read whole, so every page moves forward.
   */
  private async resultValues(jobId: string, logged: Logged[]): Promise<Map<number, SliceResult[]>> {
    const resultsEvents = logged.filter((entry) => entry.event.n === 'job:results');
    const byEvent = new Map<number, SliceResult[]>();
    if (resultsEvents.length === 0) return byEvent;
    const slices = resultsEvents.flatMap((entry) => entry.event.s ?? []);
    const first = resultsEvents[0]!;
    const budget = first === logged[0] ? Math.max(JobEventLimits.maxPageBytes, 1) : JobEventLimits.maxPageBytes;
    let rows = await this.jobs.resultValuesWithin(jobId, slices, budget);
    if (first === logged[0] && rows.length < (first.event.s ?? []).length) {
      rows = await this.jobs.resultValuesWithin(jobId, first.event.s ?? [], Number.MAX_SAFE_INTEGER);
    }
    let at = 0;
    for (const entry of resultsEvents) {
      const wanted = entry.event.s ?? [];
      if (at + wanted.length > rows.length) break;
      const results: SliceResult[] = [];
      for (const row of rows.slice(at, at + wanted.length)) {
        // A value deleted since (results.delete) is not made up: the replayed event carries the others.
        if (row.stored) results.push({ sliceIndex: row.sliceIndex, value: row.value === null ? undefined : JSON.parse(row.value) });
      }
      byEvent.set(entry.seq, results);
      at += wanted.length;
    }
    return byEvent;
  }
}
