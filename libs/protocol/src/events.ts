import type {
  DeployReply, DeployRequest, ErrorReply, JobAcceptedEvent, JobActionRequest, JobConsoleEvent, JobCustomEvent, JobEndEvent, JobEventsReply, JobEventsRequest,
  ClientStateRead, JobResultsEvent, JobSliceErrorEvent, JobStatus, JobStatusEvent, SubscribeReply, SubscribeRequest, TaskGrant, TaskRequest, TaskResults, TaskResultsAck, TaskReturn,
  WorkerEvents,
} from './schemas.js';
import type {
  ClientStateOperationRequest, StateChangeEvent, StateOperationReply, StateSnapshotReply, WorkerStateOperation,
} from './shared-state.js';

/** socket.io namespaces. Both use the WebSocket transport only, so replicas need no sticky sessions. */
export const Namespaces = { client: '/client', worker: '/worker' } as const;

type Ack<T> = (reply: T) => void;

/** Events a client sends to the scheduler (`/client`). Every payload is parsed with its schema. */
export interface ClientToSchedulerEvents {
  deploy: (request: DeployRequest, ack: Ack<DeployReply>) => void;
  /** Needs the job's read token or the owner's signed grant. With `since`, the reply carries the events missed after that cursor. */
  subscribe: (request: SubscribeRequest, ack: Ack<SubscribeReply>) => void;
  /** The next page of a job's event log after a cursor (same read access as subscribe): further pages of a catch-up, or a hole in the live events. */
  'job:events': (request: JobEventsRequest, ack: Ack<JobEventsReply>) => void;
  unsubscribe: (request: { jobId: string }) => void;
  'job:action': (request: JobActionRequest, ack: Ack<({ ok: true } & { status: JobStatus }) | ErrorReply>) => void;
  /** spec "Synchronization" from the client: job.state.set / testAndSet / increment, signed by the owner. */
  'state:op': (request: ClientStateOperationRequest, ack: Ack<StateOperationReply>) => void;
  /** The job's current state (with the job's read token or the owner's signed grant, as for subscribe). */
  'state:get': (request: ClientStateRead, ack: Ack<StateSnapshotReply>) => void;
  /** Start / stop receiving `state:change` of a job (a `change` listener on the job handle). */
  'state:subscribe': (request: ClientStateRead, ack: Ack<StateSnapshotReply>) => void;
  'state:unsubscribe': (request: { jobId: string }) => void;
}

/**
 * Events the scheduler pushes to a job's owner (room `job:<id>`), from any replica. The job events
 * carry their `cursor` in the job's event log (see JobEventPageSchema): a client delivers them in
 * sequence order and asks for any it missed (`job:events`, or `subscribe` with `since`).
 */
export interface SchedulerToClientEvents {
  'job:accepted': (event: JobAcceptedEvent) => void;
  'job:status': (event: JobStatusEvent) => void;
  'job:results': (event: JobResultsEvent) => void;
  'job:console': (event: JobConsoleEvent) => void;
  'job:custom': (event: JobCustomEvent) => void;
  'job:slice-error': (event: JobSliceErrorEvent) => void;
  /** The job finished, was cancelled or failed; `status.runStatus` says which. */
  'job:end': (event: JobEndEvent) => void;
  /** The job's shared state changed (only to sockets that subscribed with state:subscribe). */
  'state:change': (event: StateChangeEvent) => void;
}

/** Events a worker sends (`/worker`). The hello travels in the handshake's `auth`. */
export interface WorkerToSchedulerEvents {
  'task:request': (request: TaskRequest, ack: Ack<TaskGrant | ErrorReply>) => void;
  'task:results': (results: TaskResults, ack: Ack<({ ok: true } & TaskResultsAck) | ErrorReply>) => void;
  'task:return': (request: TaskReturn, ack: Ack<{ ok: true; returned: number } | ErrorReply>) => void;
  'task:events': (events: WorkerEvents) => void;
  /** worker.state.set / testAndSet / increment; allowed while the worker holds a task of the job. */
  'state:op': (request: WorkerStateOperation, ack: Ack<StateOperationReply>) => void;
  /** A sandbox listens for `change` on worker.state: receive the job's `state:change` (while holding its tasks). */
  'state:subscribe': (request: { jobId: string }, ack: Ack<StateSnapshotReply>) => void;
  'state:unsubscribe': (request: { jobId: string }) => void;
}

export interface SchedulerToWorkerEvents {
  /** A hint that work may be available; the worker answers with task:request when it has room. */
  'work:available': () => void;
  /** The job was cancelled or failed: stop its slices and drop its results. */
  'job:stop': (event: { jobId: string }) => void;
  /** The job's shared state changed (only to workers that subscribed). */
  'state:change': (event: StateChangeEvent) => void;
}
