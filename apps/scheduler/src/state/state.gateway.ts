import { type OnGatewayConnection, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { Namespace, Socket } from 'socket.io';
import {
  ClientStateOperationRequestSchema, ClientStateReadSchema, CommuneError, ErrorCode, Namespaces, StateSubscriptionSchema, WorkerStateOperationSchema,
  type ClientToSchedulerEvents, type SchedulerToClientEvents, type SchedulerToWorkerEvents, type WorkerToSchedulerEvents,
} from '@commune/protocol';
import { ReadAccess } from '../auth/read-access.js';
import { handle } from '../common-replies.js';
import { jobStateRoom, StateEvents, workerStateRoom } from './state-events.js';
import { StateService } from './state.service.js';

type ClientSocket = Socket<ClientToSchedulerEvents, SchedulerToClientEvents>;
/** The worker gateway (dispatch/) sets `leaseOwner` when the connection is accepted. */
type WorkerSocket = Socket<WorkerToSchedulerEvents, SchedulerToWorkerEvents, Record<string, never>, { leaseOwner?: string }>;

/**
 * `/client` state events: signed operations, reads and change subscriptions (with the job's read
 * token or the owner's signed grant). Thin: parse, call, reply.
 */
@WebSocketGateway({ namespace: Namespaces.client })
export class StateClientGateway implements OnGatewayInit, OnGatewayConnection {
  constructor(private readonly state: StateService, private readonly events: StateEvents, private readonly readAccess: ReadAccess) {}

  afterInit(namespace: Namespace<ClientToSchedulerEvents, SchedulerToClientEvents>): void {
    this.events.attachClients(namespace);
  }

  handleConnection(socket: ClientSocket): void {
    handle(socket, 'state:op', ClientStateOperationRequestSchema, ({ request, signature }) => this.state.fromOwner(request, signature));
    handle(socket, 'state:get', ClientStateReadSchema, async (request) => {
      await this.readAccess.authorize(request.jobId, request, { mint: false });
      return { ok: true as const, ...(await this.state.snapshot(request.jobId)) };
    });
    handle(socket, 'state:subscribe', ClientStateReadSchema, async (request) => {
      const { jobId } = request;
      await this.readAccess.authorize(jobId, request, { mint: false });
      // Joined before reading, so no change can fall between the snapshot and the first event.
      await socket.join(jobStateRoom(jobId));
      return { ok: true as const, ...(await this.state.snapshot(jobId)) };
    });
    handle(socket, 'state:unsubscribe', StateSubscriptionSchema, async ({ jobId }) => {
      await socket.leave(jobStateRoom(jobId));
      return { ok: true as const };
    });
  }
}

/** `/worker` state events: operations and change subscriptions of workers holding the job's tasks. */
@WebSocketGateway({ namespace: Namespaces.worker })
export class StateWorkerGateway implements OnGatewayInit, OnGatewayConnection {
  constructor(private readonly state: StateService, private readonly events: StateEvents) {}

  afterInit(namespace: Namespace<WorkerToSchedulerEvents, SchedulerToWorkerEvents>): void {
    this.events.attachWorkers(namespace);
  }

  handleConnection(socket: WorkerSocket): void {
    const leaseOwner = (): string => {
      const owner = socket.data?.leaseOwner;
      if (!owner) throw new CommuneError(ErrorCode.EPERM, 'this connection was not accepted as a worker');
      return owner;
    };
    handle(socket, 'state:op', WorkerStateOperationSchema, ({ jobId, operation }) => this.state.fromWorker(jobId, operation, leaseOwner()));
    handle(socket, 'state:subscribe', StateSubscriptionSchema, async ({ jobId }) => {
      if (!(await this.state.mayFollow(leaseOwner(), jobId))) throw new CommuneError(ErrorCode.ENOTLEASED, `this worker holds no task of job ${jobId}`);
      await socket.join(workerStateRoom(jobId));
      return { ok: true as const, ...(await this.state.snapshot(jobId)) };
    });
    handle(socket, 'state:unsubscribe', StateSubscriptionSchema, async ({ jobId }) => {
      await socket.leave(workerStateRoom(jobId));
      return { ok: true as const };
    });
  }
}
