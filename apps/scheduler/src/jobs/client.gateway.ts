import { Logger } from '@nestjs/common';
import { type OnGatewayConnection, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { Socket } from 'socket.io';
import {
  DeployRequestSchema, JobActionRequestSchema, Namespaces, SubscribeRequestSchema, UnsubscribeRequestSchema,
  type ClientToSchedulerEvents, type SchedulerToClientEvents,
} from '@commune/protocol';
import { ReadAccess } from '../auth/read-access.js';
import { handle } from '../common-replies.js';
import { JobEvents, jobResultsRoom, jobRoom, type ClientNamespace } from './job-events.js';
import { JobsService } from './jobs.service.js';

type ClientSocket = Socket<ClientToSchedulerEvents, SchedulerToClientEvents>;

/** `/client`: deploy, subscribe to a job's events (with its read token or the owner's grant), signed job actions. Thin: parse, call, reply. */
@WebSocketGateway({ namespace: Namespaces.client })
export class ClientGateway implements OnGatewayInit, OnGatewayConnection {
  private readonly logger = new Logger(ClientGateway.name);

  constructor(private readonly jobs: JobsService, private readonly events: JobEvents, private readonly readAccess: ReadAccess) {}

  afterInit(namespace: ClientNamespace): void {
    this.events.attach(namespace);
  }

  handleConnection(socket: ClientSocket): void {
    handle(socket, 'deploy', DeployRequestSchema, async (request) => {
      const wantsResults = request.job.collateResults || request.resultEvents === true;
      const deployed = await this.jobs.deploy(request, (jobId) => socket.join(wantsResults ? [jobRoom(jobId), jobResultsRoom(jobId)] : jobRoom(jobId)));
      // After the ack: the deploying client learns its job id before the `accepted` event.
      setImmediate(() => this.events.accepted(deployed.jobId, deployed.total));
      return { ok: true as const, ...deployed };
    });
    handle(socket, 'subscribe', SubscribeRequestSchema, async (request) => {
      const { jobId, results } = request;
      const granted = await this.readAccess.authorize(jobId, request, { mint: true });
      const status = await this.jobs.status(jobId);
      await socket.join(results === false ? jobRoom(jobId) : [jobRoom(jobId), jobResultsRoom(jobId)]);
      return { ok: true as const, status, ...granted };
    });
    handle(socket, 'unsubscribe', UnsubscribeRequestSchema, async ({ jobId }) => {
      await socket.leave(jobRoom(jobId));
      await socket.leave(jobResultsRoom(jobId));
      return { ok: true as const };
    });
    handle(socket, 'job:action', JobActionRequestSchema, async ({ request, signature }) => ({ ok: true as const, status: await this.jobs.act(request, signature) }));
    // A transport error carries whatever the peer caused; it is logged, never trusted to have a shape.
    socket.on('error', (error: unknown) => this.logger.warn(`client socket ${socket.id}: ${String((error as { message?: unknown } | null)?.message ?? error).slice(0, 200)}`));
  }
}
