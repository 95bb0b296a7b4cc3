import { Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import type { Namespace } from 'socket.io';
import type { SchedulerToWorkerEvents, WorkerToSchedulerEvents } from '@commune/protocol';

export type WorkerNamespace = Namespace<WorkerToSchedulerEvents, SchedulerToWorkerEvents>;

/** The replica-to-replica event (serverSideEmit through the Redis adapter) that says "work appeared". */
const hintEvent = 'commune:work-hint';

/**
 * Hints to workers on every replica (through the Redis adapter): new work, stopped jobs.
 *
 * 'work:available' goes only to waiting workers (their last grant was empty), and to at most
 * maxHintedPerReplica of them per hint on each replica. Sending it to every worker made every one of
 * them ask at once: 5.2 s of scheduler CPU at 19,672 idle workers before the last was answered
 * (bench/connections.mjs). A grant that leaves work ready hints again (moreWorkReady), so a big job
 * still reaches every waiting worker, maxHintedPerReplica at a time; a worker that misses every hint
 * still asks on its own within its longest poll wait (the worker's pollMaxMs, 60 s).
 */
@Injectable()
export class WorkerNotifier implements OnModuleDestroy {
  /** Waiting workers one hint wakes on each replica: the most task:requests it can set off at once. */
  static readonly maxHintedPerReplica = 512;
  /** Hints within this window are one (many deploys/requeues in a few ms send one). */
  static readonly coalesceMs = 2;
  /**
   * Re-hints of busy dispatch (a grant left work ready) within this window are one: each is a Redis
   * publish heard by every replica, so a replica handing out work to thousands of workers does not
   * publish per grant. maxHintedPerReplica every 20 ms wakes ~25,000 workers a second per replica.
   */
  static readonly rehintMs = 20;

  private readonly logger = new Logger(WorkerNotifier.name);
  private namespace: WorkerNamespace | null = null;
  private pendingHint: NodeJS.Timeout | null = null;
  private closed = false;
  /**
   * This replica's sockets whose last grant was empty, oldest first. A hinted socket leaves the set
   * and comes back (at the end) only if its next grant is empty again: hints go round robin.
   */
  private readonly waiting = new Set<string>();

  attach(namespace: WorkerNamespace): void {
    this.namespace = namespace;
    // Hints published by other replicas (serverSideEmit does not come back to its sender).
    (namespace as unknown as Namespace).on(hintEvent, () => this.wakeWaiting());
  }

  /** Work appeared (deploy, resume, put-back slices): coalesced, then heard by every replica. */
  workAvailable(): void {
    this.hint(WorkerNotifier.coalesceMs);
  }

  /** A grant left its job with more ready slices: wake the next waiting workers. */
  moreWorkReady(): void {
    this.hint(WorkerNotifier.rehintMs);
  }

  /** The socket's last grant was empty: it waits for a hint (or its own next poll). */
  waitingForWork(socketId: string): void {
    if (this.closed) return;
    this.waiting.delete(socketId);
    this.waiting.add(socketId);
  }

  /** The socket got work, or is gone: it waits for no hint. */
  notWaiting(socketId: string): void {
    this.waiting.delete(socketId);
  }

  /** Workers on this replica that wait for a hint. */
  get waitingCount(): number {
    return this.waiting.size;
  }

  jobStopped(jobId: string): void {
    if (!this.closed) this.namespace?.emit('job:stop', { jobId });
  }

  /** Shutting down: a hint sent now would publish on a Redis connection that is closing. */
  onModuleDestroy(): void {
    this.closed = true;
    if (this.pendingHint) clearTimeout(this.pendingHint);
    this.pendingHint = null;
    this.waiting.clear();
  }

  private hint(delayMs: number): void {
    if (!this.namespace || this.pendingHint || this.closed) return;
    this.pendingHint = setTimeout(() => {
      this.pendingHint = null;
      if (this.closed) return;
      try {
        (this.namespace as unknown as Namespace | null)?.serverSideEmit(hintEvent);
      } catch (error) {
        // Other replicas' workers then find the work with their next poll.
        this.logger.warn(`publishing a work hint to other replicas failed: ${(error as Error).message}`);
      }
      this.wakeWaiting();
    }, delayMs);
  }

  /** Sends 'work:available' to the longest-waiting sockets of this replica, at most maxHintedPerReplica. */
  private wakeWaiting(): void {
    const namespace = this.namespace;
    if (!namespace || this.closed) return;
    let sent = 0;
    for (const socketId of this.waiting) {
      if (sent >= WorkerNotifier.maxHintedPerReplica) break;
      this.waiting.delete(socketId);
      const socket = namespace.sockets.get(socketId);
      if (!socket) continue;
      socket.emit('work:available');
      sent++;
    }
  }
}
