import type {
  DeployReply, DeployRequest, ErrorReply, JobActionRequest, JobConsoleEvent, JobCustomEvent, JobEndEvent,
  JobResultsEvent, JobSliceErrorEvent, JobStatus, SubscribeReply, TaskGrant, TaskRequest, TaskResults, TaskResultsAck, TaskReturn,
  WorkerEvents,
} from './schemas.js';

/** socket.io namespaces. Both use the WebSocket transport only, so replicas need no sticky sessions. */
export const Namespaces = { client: '/client', worker: '/worker' } as const;

type Ack<T> = (reply: T) => void;

/** Events a client sends to the scheduler (`/client`). Every payload is parsed with its schema. */
export interface ClientToSchedulerEvents {
  deploy: (request: DeployRequest, ack: Ack<DeployReply>) => void;
  subscribe: (request: { jobId: string; results?: boolean }, ack: Ack<SubscribeReply>) => void;
  unsubscribe: (request: { jobId: string }) => void;
  'job:action': (request: JobActionRequest, ack: Ack<({ ok: true } & { status: JobStatus }) | ErrorReply>) => void;
}

/** Events the scheduler pushes to a job's owner (room `job:<id>`), from any replica. */
export interface SchedulerToClientEvents {
  'job:accepted': (event: { jobId: string; total: number }) => void;
  'job:status': (event: JobStatus) => void;
  'job:results': (event: JobResultsEvent) => void;
  'job:console': (event: JobConsoleEvent) => void;
  'job:custom': (event: JobCustomEvent) => void;
  'job:slice-error': (event: JobSliceErrorEvent) => void;
  /** The job finished, was cancelled or failed; `status.runStatus` says which. */
  'job:end': (event: JobEndEvent) => void;
}

/** Events a worker sends (`/worker`). The hello travels in the handshake's `auth`. */
export interface WorkerToSchedulerEvents {
  'task:request': (request: TaskRequest, ack: Ack<TaskGrant | ErrorReply>) => void;
  'task:results': (results: TaskResults, ack: Ack<({ ok: true } & TaskResultsAck) | ErrorReply>) => void;
  'task:return': (request: TaskReturn, ack: Ack<{ ok: true; returned: number } | ErrorReply>) => void;
  'task:events': (events: WorkerEvents) => void;
}

export interface SchedulerToWorkerEvents {
  /** A hint that work may be available; the worker answers with task:request when it has room. */
  'work:available': () => void;
  /** The job was cancelled or failed: stop its slices and drop its results. */
  'job:stop': (event: { jobId: string }) => void;
}
