import { Logger } from '@nestjs/common';
import { type OnGatewayConnection, type OnGatewayDisconnect, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { Socket } from 'socket.io';
import {
  ErrorCode, isCommuneError, Namespaces, TaskRequestSchema, TaskResultsSchema, TaskReturnSchema, WorkerEventsSchema, WorkerHelloSchema,
  type SchedulerToWorkerEvents, type WorkerToSchedulerEvents,
} from '@commune/protocol';
import { handle, toErrorReply } from '../common-replies.js';
import { ComputeGroupsService } from '../compute-groups/compute-groups.service.js';
import { JobEvents } from '../jobs/job-events.js';
import { Metrics } from '../health/metrics.js';
import { ResultsService } from '../results/results.service.js';
import { DispatchService, type WorkerSession } from './dispatch.service.js';
import { LeaseRepository } from './lease.repository.js';
import { WorkerNotifier, type WorkerNamespace } from './worker-notifier.js';

type WorkerSocket = Socket<WorkerToSchedulerEvents, SchedulerToWorkerEvents, Record<string, never>, WorkerSession>;

/** `/worker`: task requests, results, returns and sandbox events. Thin: parse, call, reply. */
@WebSocketGateway({ namespace: Namespaces.worker })
export class WorkerGateway implements OnGatewayInit, OnGatewayConnection, OnGatewayDisconnect {
  private readonly logger = new Logger(WorkerGateway.name);

  constructor(
    private readonly dispatch: DispatchService,
    private readonly results: ResultsService,
    private readonly leases: LeaseRepository,
    private readonly notifier: WorkerNotifier,
    private readonly events: JobEvents,
    private readonly metrics: Metrics,
    private readonly computeGroups: ComputeGroupsService,
  ) {}

  afterInit(namespace: WorkerNamespace): void {
    this.notifier.attach(namespace);
    // Compute group credentials are checked before the connection is accepted: a worker with a
    // wrong secret or an unknown group gets a connect_error saying which, and no work.
    namespace.use((socket, next) => {
      const hello = WorkerHelloSchema.safeParse(socket.handshake.auth);
      if (!hello.success) return next(); // handleConnection refuses it, naming what is wrong
      this.computeGroups.join(hello.data.computeGroups).then(
        (joined) => {
          (socket.data as Partial<WorkerSession>).computeGroups = new Set(joined);
          next();
        },
        (error: unknown) => {
          this.logger.warn(`refused worker ${hello.data.workerId}: ${(error as Error).message}`);
          const refusal = Object.assign(new Error(`${isCommuneError(error) ? error.code : ErrorCode.EINVAL}: ${(error as Error).message}`), {
            data: toErrorReply(error),
          });
          next(refusal);
        },
      );
    });
  }

  handleConnection(socket: WorkerSocket): void {
    const hello = WorkerHelloSchema.safeParse(socket.handshake.auth);
    if (!hello.success) {
      this.logger.warn(`refused worker ${socket.id}: bad hello (${hello.error.issues.map((i) => i.path.join('.') + ' ' + i.message).join('; ')})`);
      socket.disconnect(true);
      return;
    }
    socket.data = {
      workerId: hello.data.workerId,
      leaseOwner: `${hello.data.workerId}.${socket.id}`,
      sentWork: new Set(),
      sentModules: new Set(),
      capabilities: hello.data.capabilities,
      fits: new Map(),
      earnings: hello.data.earnings ?? null,
      minWage: hello.data.minWage,
      computeGroups: (socket.data as Partial<WorkerSession> | undefined)?.computeGroups ?? new Set(),
      publicGroup: hello.data.publicGroup,
    };
    this.metrics.workersConnected.inc();
    this.logger.log(`worker ${hello.data.workerId} connected (${hello.data.sandboxes} sandboxes)`);

    handle(socket, 'task:request', TaskRequestSchema, async ({ maxSlices }) => ({ tasks: await this.dispatch.grant(socket.data, maxSlices) }));
    handle(socket, 'task:results', TaskResultsSchema, async (batch) => ({
      ok: true as const,
      ...(await this.results.submit(socket.data.leaseOwner, batch, socket.data.earnings)),
    }));
    handle(socket, 'task:return', TaskReturnSchema, async ({ taskId, sliceIndexes }) => {
      const returned = await this.leases.returnSlices(taskId, socket.data.leaseOwner, sliceIndexes);
      this.metrics.slicesReturned.inc(returned);
      if (returned > 0) this.notifier.workAvailable();
      return { ok: true as const, returned };
    });
    handle(socket, 'task:events', WorkerEventsSchema, ({ jobId, console, custom }) => {
      this.events.console(jobId, console);
      this.events.custom(jobId, custom);
    });
    socket.on('error', (error: unknown) => this.logger.warn(`worker socket ${socket.id}: ${String((error as { message?: unknown } | null)?.message ?? error).slice(0, 200)}`));
  }

  async handleDisconnect(socket: WorkerSocket): Promise<void> {
    if (!socket.data?.leaseOwner) return;
    this.metrics.workersConnected.dec();
    try {
      const returned = await this.leases.releaseWorker(socket.data.leaseOwner);
      this.metrics.slicesReturned.inc(returned);
      if (returned > 0) this.notifier.workAvailable();
      this.logger.log(`worker ${socket.data.workerId} disconnected; ${returned} leased slices put back`);
    } catch (error) {
      this.logger.error(`releasing leases of ${socket.data.workerId} failed (the sweeper will expire them): ${(error as Error).message}`);
    }
  }
}
