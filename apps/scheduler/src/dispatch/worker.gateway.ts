import { Logger } from '@nestjs/common';
import { type OnGatewayConnection, type OnGatewayDisconnect, type OnGatewayInit, WebSocketGateway } from '@nestjs/websockets';
import type { Socket } from 'socket.io';
import {
  checkBounds, CommuneError, ErrorCode, Limits, Namespaces, type ValueBounds, TaskRequestSchema, TaskResultsSchema, TaskReturnSchema, WorkerEventsSchema, WorkerHelloSchema,
  type SchedulerToWorkerEvents, type WorkerToSchedulerEvents,
} from '@commune/protocol';
import { handle, toErrorReply } from '../common-replies.js';
import { PaymentBounds } from '../payments/domain/pricing.js';
import { ComputeGroupsService } from '../compute-groups/compute-groups.service.js';
import { JobEvents } from '../jobs/job-events.js';
import { Metrics } from '../health/metrics.js';
import { ReplicaLifecycle } from '../health/replica-lifecycle.js';
import { ResultsService } from '../results/results.service.js';
import { DispatchService, type WorkerSession } from './dispatch.service.js';
import { leaseOwnerOf } from './domain/lease-owner.js';
import { LeaseRepository } from './lease.repository.js';
import { WorkerNotifier, type WorkerNamespace } from './worker-notifier.js';

type WorkerSocket = Socket<WorkerToSchedulerEvents, SchedulerToWorkerEvents, Record<string, never>, WorkerSession>;

/** A worker's hello (socket.io handshake auth) is small: bounded before it is parsed. */
const helloBounds: ValueBounds = { maxDepth: 8, maxNodes: 4096, maxStringChars: 64 * 1024 };
/**
 * `task:results` is bounded as a message (size, values) but not in depth: each result's depth is
 * checked on its own (ResultsService), so a too-deep result is a failed attempt of its slice (ETOODEEP)
 * rather than a refused message that leaves the slice to be leased again forever. The walk is
 * iterative and zod does not recurse into result values, so no depth reaches a recursive step.
 */
const resultsMessageBounds: ValueBounds = { maxDepth: Number.MAX_SAFE_INTEGER, maxNodes: Limits.maxValueNodes, maxStringChars: Limits.maxMessageBytes };

/** A hello within helloBounds parsed with its schema (a bounds failure reads like a schema one). */
function parseHello(auth: unknown) {
  const problem = checkBounds(auth, helloBounds);
  if (problem !== null) return { success: false as const, error: { issues: [{ path: ['auth'], message: `hello out of bounds (${problem})` }] } };
  return WorkerHelloSchema.safeParse(auth);
}

/**
 * A refused handshake: the worker gets a connect_error carrying the error reply (code and message;
 * an internal failure, Redis or PostgreSQL down, says only its code, never its text).
 */
function refusal(error: unknown): Error {
  const reply = toErrorReply(error);
  return Object.assign(new Error(`${reply.code}: ${reply.message}`), { data: reply });
}

/**
 * `/worker`: task requests, results, returns and sandbox events. Thin: parse, call, reply.
 *
 * Leases belong to the worker (leaseOwnerOf its id), not to one connection: a worker keeps them
 * across reconnects. A disconnect puts them back only while this replica is serving and only if
 * it was the worker's latest connection; a worker disconnected by a drain (or by the replica
 * closing) keeps them, reconnects to another replica and delivers their results there, and if it
 * never comes back the lease sweep puts them back at their deadline.
 */
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
    private readonly lifecycle: ReplicaLifecycle,
  ) {}

  afterInit(namespace: WorkerNamespace): void {
    this.notifier.attach(namespace);
    this.lifecycle.attach(namespace.server);
    // Compute group credentials are checked before the connection is accepted: a worker with a
    // wrong secret or an unknown group gets a connect_error saying which, and no work. A draining
    // replica takes no new workers: they try another one.
    namespace.use((socket, next) => {
      if (!this.lifecycle.serving) {
        next(refusal(new CommuneError(ErrorCode.EUNAVAILABLE, 'this scheduler replica is shutting down; connect to another one')));
        return;
      }
      const hello = parseHello(socket.handshake.auth);
      if (!hello.success) return next(); // handleConnection refuses it, naming what is wrong
      const leaseOwner = leaseOwnerOf(hello.data.workerId);
      this.computeGroups.join(hello.data.computeGroups).then(
        async (joined) => {
          const data = socket.data as Partial<WorkerSession>;
          data.computeGroups = new Set(joined);
          // From now on this is the worker's connection: a late disconnect of an older one leaves its leases alone.
          data.inheritedLeases = await this.leases.attachWorker(leaseOwner, socket.id);
          next();
        },
      ).catch((error: unknown) => {
        this.logger.warn(`refused worker ${leaseOwner}: ${(error as Error).message}`);
        next(refusal(error));
      });
    });
  }

  handleConnection(socket: WorkerSocket): void {
    const hello = parseHello(socket.handshake.auth);
    if (!hello.success) {
      this.logger.warn(`refused worker ${socket.id}: bad hello (${hello.error.issues.slice(0, 5).map((i) => i.path.join('.').slice(0, 100) + ' ' + i.message.slice(0, 200)).join('; ')})`);
      socket.disconnect(true);
      return;
    }
    const early = socket.data as Partial<WorkerSession> | undefined;
    socket.data = {
      leaseOwner: leaseOwnerOf(hello.data.workerId),
      sentWork: new Set(),
      sentModules: new Set(),
      capabilities: hello.data.capabilities,
      sandboxes: hello.data.sandboxes,
      acceptedSlices: 0,
      paymentOutliers: 0,
      unpaid: false,
      fits: new Map(),
      earnings: hello.data.earnings ?? null,
      minWage: hello.data.minWage,
      computeGroups: early?.computeGroups ?? new Set(),
      publicGroup: hello.data.publicGroup,
      inheritedLeases: early?.inheritedLeases ?? 0,
    };
    this.metrics.workersConnected.inc();
    const inherited = socket.data.inheritedLeases > 0 ? `, holding ${socket.data.inheritedLeases} leased slices from an earlier connection` : '';
    this.logger.log(`worker ${socket.data.leaseOwner} connected (${hello.data.sandboxes} sandboxes${inherited})`);

    // A draining replica grants nothing more: the worker is about to be handed to another replica.
    // A worker whose grant is empty waits for a hint (it stays a waiting one while it asks, so a hint
    // sent meanwhile reaches it and it asks again); one that got work and left more ready passes the hint on.
    handle(socket, 'task:request', TaskRequestSchema, async ({ maxSlices }) => {
      if (!this.lifecycle.serving) return { tasks: [] };
      const { tasks, moreReady } = await this.lifecycle.track(socket, () => this.dispatch.grant(socket.data, maxSlices));
      if (tasks.length === 0 && socket.connected) this.notifier.waitingForWork(socket.id);
      else this.notifier.notWaiting(socket.id);
      if (moreReady) this.notifier.moreWorkReady();
      return { tasks };
    });
    handle(socket, 'task:results', TaskResultsSchema, (batch) => this.lifecycle.track(socket, async () => {
      const session = socket.data;
      const { paymentOutliers, ...ack } = await this.results.submit(
        { leaseOwner: session.leaseOwner, payee: session.unpaid ? null : session.earnings, sandboxes: session.sandboxes },
        batch,
      );
      session.acceptedSlices += ack.accepted.length;
      if (paymentOutliers > 0) this.flagOutliers(session, batch.jobId, paymentOutliers);
      return { ok: true as const, ...ack };
    }), resultsMessageBounds);
    handle(socket, 'task:return', TaskReturnSchema, ({ taskId, sliceIndexes }) => this.lifecycle.track(socket, async () => {
      const returned = await this.leases.returnSlices(taskId, socket.data.leaseOwner, sliceIndexes);
      this.metrics.slicesReturned.inc(returned);
      if (returned > 0) this.notifier.workAvailable();
      return { ok: true as const, returned };
    }));
    handle(socket, 'task:events', WorkerEventsSchema, async ({ jobId, taskId, console, custom }) => {
      // Only the worker holding a live lease on a slice speaks for it: other entries are dropped.
      const slices = [...new Set([...console.map((entry) => entry.sliceIndex), ...custom.map((event) => event.sliceIndex)])];
      if (slices.length > Limits.maxSlicesPerTask) {
        throw new CommuneError(ErrorCode.ETOOBIG, `events of more than ${Limits.maxSlicesPerTask} slices in one message (maxSlicesPerTask)`);
      }
      const held = await this.leases.held(socket.data.leaseOwner, jobId, taskId, slices);
      const leased = new Set(slices.filter((_, i) => held[i]));
      const consoleHeld = console.filter((entry) => leased.has(entry.sliceIndex));
      const customHeld = custom.filter((event) => leased.has(event.sliceIndex));
      const refused = console.length + custom.length - consoleHeld.length - customHeld.length;
      this.events.console(jobId, consoleHeld);
      this.events.custom(jobId, customHeld);
      if (refused > 0) {
        this.metrics.workerEventsRefused.inc(refused);
        if (consoleHeld.length + customHeld.length === 0) {
          throw new CommuneError(ErrorCode.ENOTLEASED, `none of these events' slices of ${jobId} is leased to this worker`);
        }
      }
      return { ok: true as const, delivered: consoleHeld.length + customHeld.length, refused };
    });
    socket.on('error', (error: unknown) => this.logger.warn(`worker socket ${socket.id}: ${String((error as { message?: unknown } | null)?.message ?? error).slice(0, 200)}`));
  }

  /**
   * Paid slices whose time was an outlier against the job's peers were paid at the bound; past
   * PaymentBounds.maxOutliersPerWorker such slices the connection is paid nothing more and gets
   * no more paid work (see PaymentBounds).
   */
  private flagOutliers(session: WorkerSession, jobId: string, outliers: number): void {
    session.paymentOutliers += outliers;
    this.metrics.paymentOutliers.inc(outliers);
    this.logger.warn(`worker ${session.leaseOwner}: ${outliers} paid slices of ${jobId} reported times above ${PaymentBounds.outlierFactor}x the job's median; paid at that bound (${session.paymentOutliers} so far)`);
    if (!session.unpaid && session.paymentOutliers > PaymentBounds.maxOutliersPerWorker) {
      session.unpaid = true;
      this.metrics.unpaidWorkers.inc();
      this.logger.warn(`worker ${session.leaseOwner}: more than ${PaymentBounds.maxOutliersPerWorker} payment outliers; this connection is no longer paid and gets no paid work`);
    }
  }

  async handleDisconnect(socket: WorkerSocket): Promise<void> {
    this.notifier.notWaiting(socket.id);
    const worker = socket.data?.leaseOwner;
    if (!worker) return;
    this.metrics.workersConnected.dec();
    try {
      if (!this.lifecycle.serving) {
        // Handed over by this replica's drain (or its close): the worker keeps its leases.
        const kept = await this.leases.leasedCount(worker);
        this.metrics.slicesKeptForReconnect.inc(kept);
        this.logger.log(`worker ${worker} disconnected (replica ${this.lifecycle.phase.name}); its ${kept} leased slices stay leased to it until it reconnects elsewhere or they expire`);
        return;
      }
      const returned = await this.leases.releaseWorker(worker, socket.id);
      if (returned === null) {
        this.logger.log(`worker ${worker}: an older connection closed; the worker is connected again and keeps its leases`);
        return;
      }
      this.metrics.slicesReturned.inc(returned);
      if (returned > 0) this.notifier.workAvailable();
      this.logger.log(`worker ${worker} disconnected; ${returned} leased slices put back`);
    } catch (error) {
      this.logger.error(`releasing leases of ${worker} failed (the sweeper will expire them): ${(error as Error).message}`);
    }
  }
}
