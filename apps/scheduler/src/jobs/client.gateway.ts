import { Logger } from '@nestjs/common';
import { type OnGatewayConnection, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { Socket } from 'socket.io';
import {
  DeployRequestSchema, JobActionRequestSchema, Namespaces, SubscribeRequestSchema,
  type ClientToSchedulerEvents, type SchedulerToClientEvents,
} from '@commune/protocol';
import { answer, reply, toErrorReply } from '../common-replies.js';
import { JobEvents, jobResultsRoom, jobRoom, type ClientNamespace } from './job-events.js';
import { JobsService } from './jobs.service.js';

type ClientSocket = Socket<ClientToSchedulerEvents, SchedulerToClientEvents>;

/** `/client`: deploy, subscribe to a job's events, signed job actions. Thin: parse, call, reply. */
@WebSocketGateway({ namespace: Namespaces.client })
export class ClientGateway implements OnGatewayInit, OnGatewayConnection {
  private readonly logger = new Logger(ClientGateway.name);

  constructor(private readonly jobs: JobsService, private readonly events: JobEvents) {}

  afterInit(namespace: ClientNamespace): void {
    this.events.attach(namespace);
  }

  handleConnection(socket: ClientSocket): void {
    socket.on('deploy', async (payload, ack) => {
      try {
        const request = DeployRequestSchema.parse(payload);
        const wantsResults = request.job.collateResults || request.resultEvents === true;
        const deployed = await this.jobs.deploy(request, (jobId) => socket.join(wantsResults ? [jobRoom(jobId), jobResultsRoom(jobId)] : jobRoom(jobId)));
        reply(ack, { ok: true as const, ...deployed });
        this.events.accepted(deployed.jobId, deployed.total);
      } catch (error) {
        reply(ack, toErrorReply(error));
      }
    });
    socket.on('subscribe', (payload, ack) =>
      answer(ack, async () => {
        const { jobId, results } = SubscribeRequestSchema.parse(payload);
        const status = await this.jobs.status(jobId);
        await socket.join(results === false ? jobRoom(jobId) : [jobRoom(jobId), jobResultsRoom(jobId)]);
        return { ok: true as const, status };
      }),
    );
    socket.on('unsubscribe', (payload) => {
      const parsed = SubscribeRequestSchema.safeParse(payload);
      if (parsed.success) {
        void socket.leave(jobRoom(parsed.data.jobId));
        void socket.leave(jobResultsRoom(parsed.data.jobId));
      }
    });
    socket.on('job:action', (payload, ack) =>
      answer(ack, async () => {
        const { request, signature } = JobActionRequestSchema.parse(payload);
        return { ok: true as const, status: await this.jobs.act(request, signature) };
      }),
    );
    socket.on('error', (error) => this.logger.warn(`client socket ${socket.id}: ${error.message}`));
  }
}
