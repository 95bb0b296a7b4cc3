import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { Namespace } from 'socket.io';
import type {
  ClientToSchedulerEvents, SchedulerToClientEvents, SchedulerToWorkerEvents, StateChangeEvent, WorkerToSchedulerEvents,
} from '@commune/protocol';

/** Clients listening for a job's state changes (a `change` listener on the job handle). */
export const jobStateRoom = (jobId: string): string => `job:${jobId}:state`;
/** Worker connections whose sandboxes listen for `change` on worker.state while they hold the job's tasks. */
export const workerStateRoom = (jobId: string): string => `state:${jobId}`;

/**
 * Pushes `state:change` to the sockets that asked for it (spec: "The scheduler does not transmit
 * state synchronization events to clients or workers that are not listening for them"), on
 * every replica through the socket.io Redis adapter.
 */
@Injectable()
export class StateEvents implements OnModuleDestroy {
  private clients: Namespace<ClientToSchedulerEvents, SchedulerToClientEvents> | null = null;
  private workers: Namespace<WorkerToSchedulerEvents, SchedulerToWorkerEvents> | null = null;
  private closed = false;

  attachClients(namespace: Namespace<ClientToSchedulerEvents, SchedulerToClientEvents>): void {
    this.clients = namespace;
  }

  attachWorkers(namespace: Namespace<WorkerToSchedulerEvents, SchedulerToWorkerEvents>): void {
    this.workers = namespace;
  }

  onModuleDestroy(): void {
    this.closed = true;
  }

  changed(event: StateChangeEvent): void {
    if (this.closed) return;
    this.clients?.to(jobStateRoom(event.jobId)).emit('state:change', event);
    this.workers?.to(workerStateRoom(event.jobId)).emit('state:change', event);
  }
}
