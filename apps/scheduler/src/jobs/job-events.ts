import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import type { Namespace } from 'socket.io';
import type {
  ClientToSchedulerEvents, ConsoleEntry, CustomEvent, JobEventCursor, JobEventName, JobStatus, SchedulerToClientEvents, SliceError, SliceResult,
} from '@commune/protocol';
import { JobEventLog } from './job-event-log.js';

export type ClientNamespace = Namespace<ClientToSchedulerEvents, SchedulerToClientEvents>;

export const jobRoom = (jobId: string): string => `job:${jobId}`;
/**
 * A job's results go to their own room: sockets that do not collate a job's results (and have no
 * `result` listener) stay out of it, so a non-collating job's results never cross the wire to them.
 */
export const jobResultsRoom = (jobId: string): string => `job:${jobId}:results`;

/**
 * What the log keeps of an event: its name and payload without the job id (the key says it), and
 * for results only the slice indexes — the values are in PostgreSQL, and copying them into Redis
 * would double what a job's results weigh (a replay reads them back, see JobEventReplay).
 */
export interface LoggedEvent {
  n: JobEventName;
  d?: Record<string, unknown>;
  /** job:results: the slices whose results the event carried. */
  s?: number[];
}

interface Outgoing {
  name: JobEventName;
  event: Record<string, unknown>;
}

/**
 * Pushes job events to the job's room on the /client namespace. The socket.io Redis adapter fans
 * them out, so a client on one replica hears about workers on another.
 *
 * Each event is first numbered and appended to the job's event log (JobEventLog), then emitted
 * with its cursor, so a client delivers a job's events in one order whichever replicas sent them,
 * and asks for those it missed. Events of one job raised in the same tick go to the log in one
 * script call (a results batch and its status, console and custom events of one worker message).
 * When the log cannot be written (Redis unreachable) the events still go out, without a cursor.
 */
@Injectable()
export class JobEvents implements OnModuleDestroy {
  private readonly logger = new Logger(JobEvents.name);
  private namespace: ClientNamespace | null = null;
  private closed = false;
  /** Events raised this tick, per job, in order; flushed in a microtask. */
  private readonly pending = new Map<string, Outgoing[]>();
  private lastLogFailureAt = 0;

  constructor(private readonly log: JobEventLog) {}

  attach(namespace: ClientNamespace): void {
    this.namespace = namespace;
  }

  onModuleDestroy(): void {
    this.closed = true;
  }

  accepted(jobId: string, total: number): void {
    this.raise(jobId, 'job:accepted', { jobId, total });
  }
  status(status: JobStatus): void {
    this.raise(status.jobId, 'job:status', status);
  }
  results(jobId: string, results: SliceResult[]): void {
    if (results.length > 0) this.raise(jobId, 'job:results', { jobId, results });
  }
  console(jobId: string, entries: ConsoleEntry[]): void {
    if (entries.length > 0) this.raise(jobId, 'job:console', { jobId, entries });
  }
  custom(jobId: string, events: CustomEvent[]): void {
    if (events.length > 0) this.raise(jobId, 'job:custom', { jobId, events });
  }
  sliceError(jobId: string, sliceIndex: number, error: SliceError): void {
    this.raise(jobId, 'job:slice-error', { jobId, sliceIndex, error });
  }
  end(status: JobStatus): void {
    this.raise(status.jobId, 'job:end', { jobId: status.jobId, status });
  }

  private raise(jobId: string, name: JobEventName, event: Record<string, unknown>): void {
    if (!this.namespace) throw new Error('JobEvents used before the /client namespace exists');
    // Shutting down: handlers still finishing must not publish on a closing Redis connection.
    if (this.closed) return;
    const queued = this.pending.get(jobId);
    if (queued) {
      queued.push({ name, event });
      return;
    }
    this.pending.set(jobId, [{ name, event }]);
    if (this.pending.size === 1) queueMicrotask(() => this.flush());
  }

  private flush(): void {
    const batches = [...this.pending];
    this.pending.clear();
    for (const [jobId, events] of batches) void this.publish(jobId, events);
  }

  /** Logs one job's batch (one script call), then emits each event with its cursor, in order. */
  private async publish(jobId: string, events: Outgoing[]): Promise<void> {
    let first: JobEventCursor | null = null;
    try {
      const texts = events.map(({ name, event }) => JSON.stringify(loggedOf(name, event)));
      first = await this.log.append(jobId, texts, events.some((e) => e.name === 'job:end'));
    } catch (error) {
      this.warnLogFailure(jobId, error);
    }
    if (this.closed || !this.namespace) return;
    events.forEach(({ name, event }, i) => {
      const payload = first ? { ...event, cursor: { epoch: first.epoch, seq: first.seq + i } } : event;
      this.emit(jobId, name, payload);
    });
  }

  private emit(jobId: string, name: JobEventName, payload: Record<string, unknown>): void {
    const namespace = this.namespace!;
    // The payloads are the protocol's job events (JobEventEntrySchema), built above by name.
    const emit = (target: unknown, body: unknown) => (target as { emit(event: string, body: unknown): boolean }).emit(name, body);
    if (name !== 'job:results') {
      emit(namespace.to(jobRoom(jobId)), payload);
      return;
    }
    emit(namespace.to(jobResultsRoom(jobId)), payload);
    // Sockets without the results get the event's place in the log, so they see no hole there.
    if (payload.cursor) emit(namespace.to(jobRoom(jobId)).except(jobResultsRoom(jobId)), { jobId, results: [], cursor: payload.cursor });
  }

  private warnLogFailure(jobId: string, error: unknown): void {
    const now = Date.now();
    if (now - this.lastLogFailureAt < 1000) return;
    this.lastLogFailureAt = now;
    this.logger.warn(`job ${jobId}: events sent without a cursor (their log could not be written: ${(error as Error)?.message ?? String(error)})`);
  }
}

/** The logged text of an event (see LoggedEvent). */
export function loggedOf(name: JobEventName, event: Record<string, unknown>): LoggedEvent {
  if (name === 'job:results') return { n: name, s: (event.results as SliceResult[]).map((result) => result.sliceIndex) };
  const data = { ...event };
  delete data.jobId;
  return { n: name, d: data };
}
