import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { Namespace } from 'socket.io';
import type { SchedulerToWorkerEvents, WorkerToSchedulerEvents } from '@commune/protocol';

export type WorkerNamespace = Namespace<WorkerToSchedulerEvents, SchedulerToWorkerEvents>;

/** Hints to workers on every replica (through the Redis adapter): new work, stopped jobs. */
@Injectable()
export class WorkerNotifier implements OnModuleDestroy {
  private namespace: WorkerNamespace | null = null;
  private pendingHint: NodeJS.Timeout | null = null;
  private closed = false;

  attach(namespace: WorkerNamespace): void {
    this.namespace = namespace;
  }

  /** Coalesced: many deploys/requeues within a few ms send one hint. */
  workAvailable(): void {
    if (!this.namespace || this.pendingHint || this.closed) return;
    this.pendingHint = setTimeout(() => {
      this.pendingHint = null;
      this.namespace?.emit('work:available');
    }, 2);
  }

  jobStopped(jobId: string): void {
    if (!this.closed) this.namespace?.emit('job:stop', { jobId });
  }

  /** Shutting down: a hint sent now would publish on a Redis connection that is closing. */
  onModuleDestroy(): void {
    this.closed = true;
    if (this.pendingHint) clearTimeout(this.pendingHint);
    this.pendingHint = null;
  }
}
