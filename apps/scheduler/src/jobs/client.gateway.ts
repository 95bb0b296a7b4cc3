import { Logger } from '@nestjs/common';
import { type OnGatewayConnection, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { Socket } from 'socket.io';
import {
  DeployRequestSchema, JobActionRequestSchema, JobEventsRequestSchema, Namespaces, SubscribeRequestSchema, UnsubscribeRequestSchema,
  type ClientToSchedulerEvents, type JobEventCursor, type JobEventPage, type SchedulerToClientEvents,
} from '@commune/protocol';
import { ReadAccess } from '../auth/read-access.js';
import { handle } from '../common-replies.js';
import { JobEventReplay } from './job-event-replay.js';
import { JobEvents, jobResultsRoom, jobRoom, type ClientNamespace } from './job-events.js';
import { JobsService } from './jobs.service.js';

type ClientSocket = Socket<ClientToSchedulerEvents, SchedulerToClientEvents>;

/**
 * `/client`: deploy, subscribe to a job's events (with its read token or the owner's grant) and
 * replay those missed after a cursor, signed job actions. Thin: parse, call, reply.
 */
@WebSocketGateway({ namespace: Namespaces.client })
export class ClientGateway implements OnGatewayInit, OnGatewayConnection {
  private readonly logger = new Logger(ClientGateway.name);

  constructor(
    private readonly jobs: JobsService,
    private readonly events: JobEvents,
    private readonly replay: JobEventReplay,
    private readonly readAccess: ReadAccess,
  ) {}

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
      const { jobId, results, since } = request;
      const granted = await this.readAccess.authorize(jobId, request, { mint: true });
      const status = await this.jobs.status(jobId);
      const join = () => socket.join(results === false ? jobRoom(jobId) : [jobRoom(jobId), jobResultsRoom(jobId)]);
      let events: JobEventPage | undefined;
      if (since === undefined) {
        // Where the log stands is read before joining: an event between the two arrives live
        // after that cursor or, if it went out just before the join, is a hole the client fetches.
        events = await this.page(socket, jobId, undefined);
        await join();
      } else {
        // Joined first: every event after the cursor is in the page or arrives live (both, at worst: the client drops the copy).
        await join();
        events = await this.page(socket, jobId, since);
      }
      return { ok: true as const, status, ...granted, ...(events ? { events } : {}) };
    });
    handle(socket, 'job:events', JobEventsRequestSchema, async (request) => {
      await this.readAccess.authorize(request.jobId, request, { mint: false });
      const events = await this.replay.page(request.jobId, request.since, socket.rooms.has(jobResultsRoom(request.jobId)));
      return { ok: true as const, events };
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

  /**
   * The subscribe's page of the job's event log. Without it (Redis unreachable) the subscribe
   * still answers, with no `events`: the client then does what it did before event logs (status
   * and results over REST), rather than lose the subscribe.
   */
  private async page(socket: ClientSocket, jobId: string, since: JobEventCursor | undefined): Promise<JobEventPage | undefined> {
    try {
      return await this.replay.page(jobId, since, socket.rooms.has(jobResultsRoom(jobId)));
    } catch (error) {
      this.logger.warn(`job ${jobId}: its event log could not be read for a subscribe: ${(error as Error)?.message ?? String(error)}`);
      return undefined;
    }
  }
}
