import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { Namespace } from 'socket.io';
import type { ClientToSchedulerEvents, ConsoleEntry, CustomEvent, JobStatus, SchedulerToClientEvents, SliceError, SliceResult } from '@commune/protocol';

export type ClientNamespace = Namespace<ClientToSchedulerEvents, SchedulerToClientEvents>;

export const jobRoom = (jobId: string): string => `job:${jobId}`;
/**
 * A job's results go to their own room: sockets that do not collate a job's results (and have no
 * `result` listener) stay out of it, so a non-collating job's results never cross the wire to them.
 */
export const jobResultsRoom = (jobId: string): string => `job:${jobId}:results`;

/**
 * Pushes job events to the job's room on the /client namespace. The socket.io Redis adapter fans
 * them out, so a client on one replica hears about workers on another.
 */
@Injectable()
export class JobEvents implements OnModuleDestroy {
  private namespace: ClientNamespace | null = null;
  private closed = false;

  attach(namespace: ClientNamespace): void {
    this.namespace = namespace;
  }

  private room(jobId: string, name = jobRoom(jobId)) {
    if (!this.namespace) throw new Error('JobEvents used before the /client namespace exists');
    // Shutting down: handlers still finishing must not publish on a closing Redis connection.
    if (this.closed) return { emit: () => false };
    return this.namespace.to(name);
  }

  onModuleDestroy(): void {
    this.closed = true;
  }

  accepted(jobId: string, total: number): void {
    this.room(jobId).emit('job:accepted', { jobId, total });
  }
  status(status: JobStatus): void {
    this.room(status.jobId).emit('job:status', status);
  }
  results(jobId: string, results: SliceResult[]): void {
    if (results.length > 0) this.room(jobId, jobResultsRoom(jobId)).emit('job:results', { jobId, results });
  }
  console(jobId: string, entries: ConsoleEntry[]): void {
    if (entries.length > 0) this.room(jobId).emit('job:console', { jobId, entries });
  }
  custom(jobId: string, events: CustomEvent[]): void {
    if (events.length > 0) this.room(jobId).emit('job:custom', { jobId, events });
  }
  sliceError(jobId: string, sliceIndex: number, error: SliceError): void {
    this.room(jobId).emit('job:slice-error', { jobId, sliceIndex, error });
  }
  end(status: JobStatus): void {
    this.room(status.jobId).emit('job:end', { jobId: status.jobId, status });
  }
}
