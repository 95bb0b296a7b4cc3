import type { Socket } from 'socket.io-client';
import { z } from 'zod';
import {
  ErrorCode,
  JobStopEventSchema,
  ErrorReplySchema,
  JobIdSchema,
  Limits,
  SliceIndexSchema,
  TaskIdSchema,
  TaskResultsAckSchema,
  TaskSchema,
  type ConsoleEntry,
  type CustomEvent,
  type SchedulerToWorkerEvents,
  type SliceOutcome,
  type Task,
  type WorkerToSchedulerEvents,
  moduleTableHashOf,
  type ModuleTable,
} from '@commune/protocol';
import { workHashOf, type SandboxJob, type SandboxModules, type SandboxPool, type ValueWeight } from '@commune/sandbox';
import { describeEarnings, type EarningsSnapshot, type EarningsSource } from './earnings.js';
import type { Logger } from './log.js';
import { PollBackoff } from './poll-backoff.js';
import { WorkerStateLink } from './worker-state.js';

/** The worker's end of the `/worker` namespace. */
export type WorkerSocket = Socket<SchedulerToWorkerEvents, WorkerToSchedulerEvents>;
/** What the supervisor needs of a SandboxPool. */
export type WorkerPool = Pick<SandboxPool, 'size' | 'pending' | 'run' | 'withdraw' | 'cancelJob'> & Partial<Pick<SandboxPool, 'updateState'>>;

export interface SupervisorTiming {
  /** Outcomes wait at most this long before they are sent... */
  resultFlushMs: number;
  /** ...or until this many of one task have gathered (or they weigh a message's worth, see messageBudget). */
  maxOutcomesPerMessage: number;
  /** Console and custom events are sent in batches this often. */
  eventFlushMs: number;
  /**
   * After an empty grant, ask again this long later unless 'work:available' comes first; each further
   * empty grant in a row doubles the wait (jittered) up to pollMaxMs (see poll-backoff.ts).
   */
  pollMs: number;
  /** The longest wait between two requests of an idle worker: bounds how long it can miss ready work. */
  pollMaxMs: number;
  /** The one-line summary comes this often (when there was work). */
  summaryMs: number;
  /** Longest wait for the scheduler to acknowledge a message. */
  ackTimeoutMs: number;
  /** On shutdown, running slices get this long to finish before they are stopped and returned. */
  drainTimeoutMs: number;
  /** On shutdown, returned slices and then the last results each get this long to be acknowledged. */
  flushTimeoutMs: number;
  /**
   * Wait before reconnecting after connections failed (the scheduler refused the hello, or could
   * not be reached): with one URL after each failure, with several after every URL failed in a row;
   * doubles each time, up to 30 s.
   */
  reconnectDelayMs: number;
  /**
   * The first reconnect after the scheduler closed the connection (its replica drains) or went away
   * comes after a random wait of up to this long, so the workers of one replica do not all arrive at
   * the next in the same instant.
   */
  handoverJitterMs: number;
  /** The pool is kept fed with about this many seconds of work (at least 2 slices per sandbox). */
  bufferSeconds: number;
}

export const defaultTiming: SupervisorTiming = {
  resultFlushMs: 10,
  maxOutcomesPerMessage: 500,
  eventFlushMs: 50,
  pollMs: 1000,
  pollMaxMs: 60_000,
  summaryMs: 10_000,
  ackTimeoutMs: 10_000,
  drainTimeoutMs: 20_000,
  flushTimeoutMs: 3_000,
  reconnectDelayMs: 1000,
  handoverJitterMs: 250,
  bufferSeconds: 1,
};

export interface SupervisorOptions {
  /**
   * Scheduler base URLs (at least one; replicas of one scheduler, or a load balancer). The worker
   * is connected to one at a time, the first one first; with several it moves to the next, round
   * robin, when its replica closes the connection (a drain), dies or cannot be reached.
   */
  schedulers: readonly string[];
  /**
   * Makes the (not yet connected) socket for one scheduler URL; called once per URL. With one URL
   * it should reconnect by itself (socket.io's reconnection); with several the supervisor moves on
   * instead, so it should not.
   */
  socketFor: (schedulerUrl: string) => WorkerSocket;
  pool: WorkerPool;
  log: Logger;
  workerId: string;
  timing?: Partial<SupervisorTiming>;
  /** The earnings account at the bank (--bank with --earnings): shown in the summary line. */
  earnings?: EarningsSource;
}

export interface SupervisorStats {
  tasksFinished: number;
  slicesOk: number;
  slicesFailed: number;
  accepted: number;
  refused: number;
  returned: number;
}

/** Largest task:request. */
const maxRequestSlices = Limits.maxSlicesPerTask * 16;
/** Slices buffered per sandbox at most: a few of the pool's largest chunks. */
const maxBufferedSlicesPerSandbox = 4 * 256;
/** Results messages awaiting an acknowledgement before the worker stops asking for more work. */
const maxSendsInFlight = 64;
/** Attempts at sending one batch of results while the connection stays up. */
const maxResultAttempts = 3;
/**
 * Sends of one results message the scheduler answers EUNAVAILABLE (busy: its budget for large
 * messages is spent, or its database is down for a moment) before giving up: with the waits
 * below, about 30 s, longer than a database restart.
 */
const maxBusyResultAttempts = 10;
/** First wait before resending results the scheduler could not take; doubles each time, up to busyRetryMaxDelayMs. */
const busyRetryDelayMs = 100;
const busyRetryMaxDelayMs = 5000;
/** Console + custom events buffered per job between flushes; the rest are counted and dropped. */
const maxBufferedEventsPerJob = 10_000;
/** Bytes (UTF-8, at most) of console + custom events buffered per job between flushes. */
const maxBufferedEventBytesPerJob = 2 * Limits.maxMessageBytes;
/**
 * What one outgoing message may weigh: every socket.io message stays under the scheduler's
 * Limits.maxMessageBytes and Limits.maxValueNodes (it refuses larger ones whole, so a batch over
 * them would lose every result in it). Results and events are split across messages to fit; the
 * weights the sandbox pool gives are upper bounds, the margin covers the message's own envelope.
 */
const messageBudget: ValueWeight = { bytes: Limits.maxMessageBytes - 64 * 1024, nodes: Limits.maxValueNodes - 1024 };
/** Work sources remembered by hash (the scheduler sends each only once per connection). */
const maxCachedWorkSources = 64;
/** Module tables (job.requires()) remembered by hash, like work sources. */
const maxCachedModuleTables = 64;
/** Module sources remembered by hash: at most this many, and at most this many characters. */
const maxCachedModuleSources = 8192;
const maxCachedModuleSourceChars = 64 * 1024 * 1024;
const maxReconnectDelayMs = 30_000;

const GrantReplySchema = z.union([ErrorReplySchema, z.object({ tasks: z.array(z.unknown()) })]);
const ResultsReplySchema = z.union([ErrorReplySchema, TaskResultsAckSchema.extend({ ok: z.literal(true) })]);
const ReturnReplySchema = z.union([ErrorReplySchema, z.object({ ok: z.literal(true), returned: z.number() })]);
/** Enough of a malformed task to give its slices back. */
const ReturnableTaskSchema = z.object({
  taskId: TaskIdSchema,
  jobId: JobIdSchema,
  slices: z.array(z.object({ sliceIndex: SliceIndexSchema })).min(1).max(Limits.maxSlicesPerTask),
});

/**
 * A task being run or reported. It outlives the connection it came on: its lease belongs to the
 * worker (the scheduler derives the lease owner from the worker id, the same on every connection),
 * so outcomes computed while the worker reconnects, to the same scheduler or another replica, are
 * sent on the next connection.
 */
interface ActiveTask {
  readonly task: Task;
  readonly job: SandboxJob;
  readonly startedAt: number;
  /** Slices without an outcome that were not given back. */
  readonly outstanding: Set<number>;
  buffer: SliceOutcome[];
  /** What each buffered outcome weighs in a message, and their sum. */
  weights: ValueWeight[];
  bufferBytes: number;
  ok: number;
  failed: number;
  accepted: number;
  refused: number;
  readonly refusedCodes: Map<string, number>;
  returned: number;
  unacknowledged: number;
  sending: number;
  runDone: boolean;
  /** Stopped by the scheduler (job:stop): its results go nowhere. */
  dropped: boolean;
  finished: boolean;
}

interface EventBuffer {
  /** Console entries and custom events in the order they came, each with its weight. */
  items: Array<{ kind: 'console'; item: ConsoleEntry; weight: ValueWeight } | { kind: 'custom'; item: CustomEvent; weight: ValueWeight }>;
  bytes: number;
  dropped: number;
}

/**
 * The worker's supervisor: keeps the sandbox pool fed with tasks from the scheduler, streams
 * outcomes and events back, and shuts down without losing work. All socket traffic is parsed
 * with the protocol's schemas; anything malformed is logged and ignored.
 */
export class Supervisor {
  readonly stats: SupervisorStats = { tasksFinished: 0, slicesOk: 0, slicesFailed: 0, accepted: 0, refused: 0, returned: 0 };
  private readonly timing: SupervisorTiming;
  private readonly schedulers: readonly string[];
  /** One socket per scheduler URL, made when first used. */
  private readonly sockets = new Map<string, WorkerSocket>();
  /** The scheduler URL in use (an index into `schedulers`) and its socket. */
  private schedulerIndex = 0;
  private socket: WorkerSocket;
  private readonly pool: WorkerPool;
  private readonly log: Logger;
  private started = false;
  /** Increases with each connection; tasks remember the one they came on. */
  private connection = 0;
  private connected = false;
  private stopping = false;
  /** Shut down: no connection is made any more. */
  private closed = false;
  private stopped: Promise<void> | null = null;
  private requesting = false;
  private waitingForWork = false;
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly pollBackoff: PollBackoff;
  /** A 'work:available' came while a request was out: an empty answer to it asks again at once. */
  private hintedWhileRequesting = false;
  private resultTimer: NodeJS.Timeout | null = null;
  private eventTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private summaryTimer: NodeJS.Timeout | null = null;
  private rateTimer: NodeJS.Timeout | null = null;
  /** Connection attempts that failed in a row (reset by a connection): the reconnect backoff. */
  private connectFailures = 0;
  /** When the connection in use was lost (performance.now()), for the log line that says how long it was down. */
  private lostAt: number | null = null;
  private sendsInFlight = 0;
  private readonly workSources = new Map<string, string>();
  private readonly moduleTables = new Map<string, ModuleTable>();
  private readonly moduleSources = new Map<string, string>();
  private moduleSourceChars = 0;
  private readonly tasks = new Map<string, ActiveTask>();
  private readonly tasksByJob = new Map<SandboxJob, ActiveTask>();
  private readonly events = new Map<string, EventBuffer>();
  /** spec "Shared State": worker.state operations and changes. */
  private readonly state: WorkerStateLink;
  /** Tasks whose results wait for their job's state operations to be answered. */
  private readonly waitingForState = new WeakSet<ActiveTask>();
  /** Slices per second, smoothed; sizes the work buffer. */
  private rate = 0;
  /** Buffer size learned from the sandboxes running dry; halves every rate sample. */
  private starvedTarget = 0;
  private lastRequestSlices = 0;
  private lastGrantFull = false;
  private rateSample = { at: 0, done: 0 };
  private summarySample = { at: 0, done: 0 };
  /** The earnings balance last shown (smallest units), so an idle worker logs only changes. */
  private shownEarnings: string | undefined;

  constructor(private readonly options: SupervisorOptions) {
    this.timing = { ...defaultTiming, ...options.timing };
    this.timing.maxOutcomesPerMessage = Math.max(1, Math.min(Limits.maxSlicesPerTask, this.timing.maxOutcomesPerMessage));
    if (options.schedulers.length === 0) throw new Error('a worker needs at least one scheduler URL');
    this.schedulers = [...options.schedulers];
    this.pool = options.pool;
    this.log = options.log;
    this.state = new WorkerStateLink(() => this.socket, this.pool, this.log, this.timing.ackTimeoutMs);
    this.socket = this.socketAt(0);
    this.pollBackoff = new PollBackoff({ initialMs: this.timing.pollMs, maxMs: this.timing.pollMaxMs });
  }

  /** The scheduler URL in use. */
  get schedulerUrl(): string {
    return this.schedulers[this.schedulerIndex]!;
  }

  /** Slices done (ok or failed) since start. */
  get slicesDone(): number {
    return this.stats.slicesOk + this.stats.slicesFailed;
  }

  /** Tasks being run or reported. */
  get activeTasks(): number {
    return this.tasks.size;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    const now = performance.now();
    this.rateSample = { at: now, done: 0 };
    this.summarySample = { at: now, done: 0 };
    this.rateTimer = setInterval(() => this.sampleRate(), 250);
    this.summaryTimer = setInterval(() => this.logSummary(false), this.timing.summaryMs);
    this.rateTimer.unref();
    this.summaryTimer.unref();
    if (this.options.earnings) this.showStartingEarnings(this.options.earnings);
    this.socket.connect();
  }

  /** The socket of the scheduler URL at `index`, made (and listened to) the first time. Events of a socket not in use are ignored. */
  private socketAt(index: number): WorkerSocket {
    const url = this.schedulers[index]!;
    const known = this.sockets.get(url);
    if (known !== undefined) return known;
    const socket = this.options.socketFor(url);
    this.sockets.set(url, socket);
    const mine = () => socket === this.socket;
    socket.on('connect', () => mine() && this.onConnect());
    socket.on('disconnect', (reason) => mine() && this.onDisconnect(String(reason)));
    socket.on('connect_error', (error) => mine() && this.onConnectError(error));
    socket.on('work:available', () => mine() && this.onWorkAvailable());
    socket.on('job:stop', (event: unknown) => mine() && this.onJobStop(event));
    this.state.listenTo(socket, mine);
    return socket;
  }

  /** The earnings account's balance when the worker starts (the baseline of "since start"). */
  private showStartingEarnings(earnings: EarningsSource): void {
    void earnings.refresh().then(
      (snapshot) => {
        if (snapshot !== undefined) {
          this.shownEarnings ??= snapshot.balanceUnits;
          this.log.info(`earnings account ${earnings.address}: ${snapshot.balance} DCC (bank ${earnings.bank})`, {
            event: 'earnings',
            address: earnings.address,
            earningsDcc: snapshot.balance,
          });
        } else {
          this.log.warn(`cannot read the earnings account ${earnings.address} at ${earnings.bank}: ${earnings.lastError ?? 'no answer'}; retrying with each summary`, {
            event: 'earnings_unavailable',
            address: earnings.address,
            error: earnings.lastError,
          });
        }
      },
      () => undefined,
    );
  }

  /**
   * Graceful shutdown: stop asking for work, give unstarted slices back, let running ones finish
   * (at most drainTimeoutMs, then stop and give them back too), send the last results, disconnect.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  // ---------------------------------------------------------------- connection

  private onConnect(): void {
    this.connection++;
    this.connected = true;
    this.requesting = false;
    this.waitingForWork = false;
    this.clearTimer('pollTimer');
    this.pollBackoff.reset();
    this.connectFailures = 0;
    const carried = [...this.tasks.values()].filter((active) => !active.dropped);
    const downFor = this.lostAt === null ? '' : ` after ${Math.round(performance.now() - this.lostAt)} ms without a scheduler`;
    this.lostAt = null;
    this.log.info(
      `connected to ${this.schedulerUrl} as ${this.options.workerId}${downFor}` +
        (carried.length > 0 ? `; sending what ${carried.length} tasks from before computed` : ''),
      { event: 'connected', workerId: this.options.workerId, scheduler: this.schedulerUrl, carriedTasks: carried.length },
    );
    this.state.connected();
    // Outcomes computed while there was no connection go now, on this one; shared state is followed here again.
    for (const active of carried) {
      this.state.follow(active.task.jobId);
      this.flushTask(active);
    }
    this.flushEvents();
    this.pump();
  }

  private onDisconnect(reason: string): void {
    if (!this.connected) return;
    this.connected = false;
    this.requesting = false;
    this.waitingForWork = false;
    this.clearTimer('pollTimer');
    if (this.stopping && reason === 'io client disconnect') return;
    this.lostAt = performance.now();
    // The tasks stay: their leases are the worker's, not the connection's. Their slices keep
    // running and their outcomes wait for the next connection (see ActiveTask).
    let unfinished = 0;
    for (const active of this.tasks.values()) if (!active.dropped) unfinished += active.outstanding.size + active.buffer.length;
    const drained = reason === 'io server disconnect';
    this.log.warn(
      `disconnected from the scheduler at ${this.schedulerUrl} (${drained ? 'it closed the connection' : reason})` +
        `${unfinished > 0 ? `; keeping ${unfinished} unfinished slices for the next connection` : ''}`,
      { event: 'disconnected', reason, scheduler: this.schedulerUrl, keptSlices: unfinished },
    );
    // A replica that closes our connection is shutting down (socket.io will not reconnect then);
    // with several URLs the worker also leaves one that went away for the next.
    if (this.schedulers.length > 1 || drained) this.reconnect();
  }

  private onConnectError(error: Error): void {
    if (this.closed) return;
    const message = error?.message ?? String(error);
    this.connectFailures++;
    if (this.schedulers.length === 1 && this.socket.active) {
      // Attempts 1, 2, 4, 8, ...: a scheduler that is down for long does not flood the log.
      if ((this.connectFailures & (this.connectFailures - 1)) === 0) {
        this.log.warn(`cannot reach the scheduler at ${this.schedulerUrl}: ${message} (attempt ${this.connectFailures}); retrying`, {
          event: 'connect_error',
          error: message,
          attempt: this.connectFailures,
        });
      }
      return;
    }
    // socket.io does not retry a refused handshake (a bad hello, a wrong compute group secret, a draining replica).
    const refused = !this.socket.active;
    const from = this.schedulerUrl;
    const delayMs = this.reconnect();
    const next = this.schedulers.length > 1 ? `trying ${this.schedulerUrl}` : 'retrying';
    const text = refused ? `the scheduler at ${from} refused the connection: ${message}` : `cannot reach the scheduler at ${from}: ${message}`;
    // A replica that is shutting down refuses new workers: expected, not an error.
    const level = refused && !/EUNAVAILABLE/.test(message) ? 'error' : 'warn';
    if (level === 'error' || (this.connectFailures & (this.connectFailures - 1)) === 0) {
      this.log[level](`${text}; ${next} in ${Math.round(delayMs)} ms`, { event: refused ? 'connect_refused' : 'connect_error', error: message, attempt: this.connectFailures });
    }
  }

  /** The index of the URL the worker moves to next (round robin). */
  private nextIndex(): number {
    return this.schedulers.length > 1 ? (this.schedulerIndex + 1) % this.schedulers.length : this.schedulerIndex;
  }

  /**
   * Connects again, to the next URL when there are several (the one in use drained, died, or could
   * not be reached). The first attempt after a lost connection comes after a short random wait
   * (handoverJitterMs); after every URL failed in a row, the wait is reconnectDelayMs, doubling each
   * round up to 30 s. Returns the wait.
   */
  private reconnect(): number {
    // While shutting down too: the last results still go to whichever replica takes them.
    if (this.closed) return 0;
    const rounds = Math.floor(this.connectFailures / this.schedulers.length);
    const delayMs = rounds === 0 ? Math.random() * this.timing.handoverJitterMs : Math.min(maxReconnectDelayMs, this.timing.reconnectDelayMs * 2 ** (rounds - 1));
    const index = this.nextIndex();
    if (index !== this.schedulerIndex) {
      const previous = this.socket;
      this.schedulerIndex = index;
      this.socket = this.socketAt(index);
      // Not in use any more: its own reconnection stops, and its events are ignored from now on.
      previous.disconnect();
    }
    this.clearTimer('reconnectTimer');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed && !this.socket.connected) this.socket.connect();
    }, delayMs);
    return delayMs;
  }

  // ---------------------------------------------------------------- asking for work

  /** Asks for work when the pool is running low. Cheap; called whenever something changed. */
  private pump(): void {
    if (this.stopping || !this.connected || this.requesting || this.waitingForWork) return;
    if (this.sendsInFlight >= maxSendsInFlight) return;
    const pending = this.pool.pending;
    if (pending === 0 && this.lastGrantFull) {
      // The sandboxes ran dry before the rate estimate caught up: ask for twice as much.
      this.starvedTarget = Math.max(this.pool.size * 4, this.starvedTarget * 2);
    }
    const target = this.bufferTarget();
    if (pending > target / 2) return;
    this.request(Math.min(maxRequestSlices, target - pending));
  }

  private bufferTarget(): number {
    const sandboxes = this.pool.size;
    const minimum = sandboxes * 2;
    const maximum = Math.min(maxRequestSlices, sandboxes * maxBufferedSlicesPerSandbox);
    const wanted = Math.max(Math.ceil(this.rate * this.timing.bufferSeconds), this.starvedTarget);
    return Math.max(minimum, Math.min(maximum, wanted));
  }

  private request(maxSlices: number): void {
    this.requesting = true;
    this.hintedWhileRequesting = false;
    this.lastRequestSlices = maxSlices;
    const connection = this.connection;
    this.socket
      .timeout(this.timing.ackTimeoutMs)
      .emitWithAck('task:request', { maxSlices })
      .then(
        (reply: unknown) => {
          if (connection !== this.connection || !this.requesting) return;
          this.requesting = false;
          this.onGrant(reply);
        },
        (error: unknown) => {
          if (connection !== this.connection || !this.requesting) return;
          this.requesting = false;
          if (this.stopping) return;
          this.log.warn(`asking for work failed: ${messageOf(error)}`, { event: 'request_failed' });
          // Not an idle answer: retry after the first wait, not a doubled one.
          this.pollBackoff.reset();
          this.waitForWork();
        },
      );
  }

  private waitForWork(): void {
    this.waitingForWork = true;
    this.clearTimer('pollTimer');
    this.pollTimer = setTimeout(() => {
      this.pollTimer = null;
      this.waitingForWork = false;
      this.pump();
    }, this.pollBackoff.next());
  }

  private onWorkAvailable(): void {
    if (this.requesting) this.hintedWhileRequesting = true;
    if (!this.waitingForWork) return;
    this.clearTimer('pollTimer');
    this.pollBackoff.reset();
    this.waitingForWork = false;
    this.pump();
  }

  private onGrant(raw: unknown): void {
    const reply = GrantReplySchema.safeParse(raw);
    if (!reply.success) {
      this.log.warn(`ignored a malformed task grant: ${z.prettifyError(reply.error)}`, { event: 'invalid_message', message: 'task:request' });
      this.waitForWork();
      return;
    }
    if ('ok' in reply.data) {
      this.log.warn(`the scheduler refused to hand out work: ${reply.data.code}: ${reply.data.message}`, { event: 'request_refused', code: reply.data.code });
      // A refusal (ELEASECAP until results go back, a replica shutting down) is not idleness: no doubled wait.
      this.pollBackoff.reset();
      this.waitForWork();
      return;
    }
    if (reply.data.tasks.length === 0) {
      this.lastGrantFull = false;
      // The scheduler hints only workers whose last grant was empty; one hint that crossed this answer is not lost.
      if (this.hintedWhileRequesting) {
        this.pollBackoff.reset();
        this.pump();
        return;
      }
      this.waitForWork();
      return;
    }
    this.pollBackoff.reset();
    let granted = 0;
    for (const task of reply.data.tasks) granted += (task as { slices?: unknown[] } | null)?.slices?.length ?? 0;
    this.lastGrantFull = granted >= this.lastRequestSlices;
    for (const rawTask of reply.data.tasks) {
      const parsed = TaskSchema.safeParse(rawTask);
      if (parsed.success) {
        this.startTask(parsed.data);
        continue;
      }
      this.log.warn(`ignored a malformed task: ${z.prettifyError(parsed.error)}`, { event: 'invalid_message', message: 'task' });
      const returnable = ReturnableTaskSchema.safeParse(rawTask);
      if (returnable.success) {
        const { taskId, jobId, slices } = returnable.data;
        void this.returnSlices(taskId, jobId, slices.map((slice) => slice.sliceIndex), 'malformed task');
      }
    }
    this.pump();
  }

  // ---------------------------------------------------------------- running tasks

  private startTask(task: Task): void {
    const sliceIndexes = task.slices.map((slice) => slice.sliceIndex);
    if (this.stopping) {
      void this.returnSlices(task.taskId, task.jobId, sliceIndexes, 'shutting down');
      return;
    }
    if (this.tasks.has(task.taskId)) {
      this.log.warn(`ignored task ${task.taskId}: it is running already`, { event: 'duplicate_task', taskId: task.taskId });
      return;
    }
    let work = this.workSources.get(task.workHash);
    if (work === undefined && task.work !== undefined) {
      if (workHashOf(task.work) !== task.workHash) {
        this.log.error(`task ${task.taskId}: its work function does not match its hash ${task.workHash}; giving it back`, {
          event: 'bad_work_hash',
          taskId: task.taskId,
          jobId: task.jobId,
        });
        void this.returnSlices(task.taskId, task.jobId, sliceIndexes, 'work hash mismatch');
        return;
      }
      work = task.work;
      this.rememberWork(task.workHash, work);
    }
    if (work === undefined) {
      this.log.error(`task ${task.taskId}: no work function for hash ${task.workHash} (not sent, not cached); giving it back`, {
        event: 'missing_work',
        taskId: task.taskId,
        jobId: task.jobId,
      });
      void this.returnSlices(task.taskId, task.jobId, sliceIndexes, 'missing work function');
      return;
    }

    let modules: SandboxModules | undefined;
    if (task.modulesHash !== undefined) {
      const resolved = this.resolveModules(task, task.modulesHash);
      if (typeof resolved === 'string') {
        this.log.error(`task ${task.taskId}: ${resolved}; giving it back`, { event: 'missing_modules', taskId: task.taskId, jobId: task.jobId });
        void this.returnSlices(task.taskId, task.jobId, sliceIndexes, 'missing or bad modules');
        return;
      }
      modules = resolved;
    }

    const { work: _sent, modules: _table, moduleSources: _sources, ...taskWithoutWork } = task;
    const job: SandboxJob = {
      jobId: task.jobId,
      workHash: task.workHash,
      work,
      arguments: task.arguments,
      public: task.public,
      progressTimeoutMs: task.progressTimeoutMs,
      sliceTimeLimitMs: task.sliceTimeLimitMs,
      spreadDatum: task.spreadDatum,
      ...(modules ? { modules } : {}),
      ...(task.state ? { state: task.state } : {}),
    };
    const active: ActiveTask = {
      task: taskWithoutWork,
      job,
      startedAt: performance.now(),
      outstanding: new Set(sliceIndexes),
      buffer: [],
      weights: [],
      bufferBytes: 0,
      ok: 0,
      failed: 0,
      accepted: 0,
      refused: 0,
      refusedCodes: new Map(),
      returned: 0,
      unacknowledged: 0,
      sending: 0,
      runDone: false,
      dropped: false,
      finished: false,
    };
    this.tasks.set(task.taskId, active);
    this.tasksByJob.set(job, active);
    this.state.follow(task.jobId);
    const name = task.public.name ? ` "${task.public.name}"` : '';
    this.log.info(`task ${task.taskId}: job ${task.jobId}${name}, ${task.slices.length} slices`, {
      event: 'task_fetched',
      taskId: task.taskId,
      jobId: task.jobId,
      name: task.public.name,
      slices: task.slices.length,
    });
    this.pool
      .run(job, task.slices, {
        onOutcome: (_jobId, outcome, weight) => this.onOutcome(active, outcome, weight ?? weightOf(outcome)),
        onConsole: (jobId, entry, weight) => {
          if (!active.dropped) this.queueEvent(jobId, { kind: 'console', item: entry, weight: weight ?? weightOf(entry) });
        },
        onCustom: (jobId, event, weight) => {
          if (!active.dropped) this.queueEvent(jobId, { kind: 'custom', item: event, weight: weight ?? weightOf(event) });
        },
        onStateOperation: (jobId, operation) => this.state.operate(jobId, operation),
        onStateListening: (jobId) => this.state.listen(jobId),
      })
      .catch((error: unknown) => {
        this.log.error(`task ${task.taskId}: the sandbox pool failed: ${messageOf(error)}`, { event: 'pool_error', taskId: task.taskId });
      })
      .finally(() => this.onRunDone(active));
  }

  private rememberWork(hash: string, source: string): void {
    this.workSources.delete(hash);
    this.workSources.set(hash, source);
    if (this.workSources.size > maxCachedWorkSources) this.workSources.delete(this.workSources.keys().next().value as string);
  }

  /**
   * The task's modules (job.requires()) from what it carries and what this worker cached: sources
   * and tables arrive once per connection and are kept by hash (checked against it). A string
   * says what is missing or wrong.
   */
  private resolveModules(task: Task, tableHash: string): SandboxModules | string {
    for (const { hash, source } of task.moduleSources ?? []) {
      if (workHashOf(source) !== hash) return `a module source does not match its hash ${hash}`;
      this.rememberModuleSource(hash, source);
    }
    let table = this.moduleTables.get(tableHash);
    if (task.modules !== undefined) {
      if (moduleTableHashOf(task.modules) !== tableHash) return `its module table does not match its hash ${tableHash}`;
      table = task.modules;
    }
    if (table === undefined) return `no module table for hash ${tableHash} (not sent, not cached)`;
    this.moduleTables.delete(tableHash);
    this.moduleTables.set(tableHash, table);
    if (this.moduleTables.size > maxCachedModuleTables) this.moduleTables.delete(this.moduleTables.keys().next().value as string);
    const files: SandboxModules['files'] = [];
    for (const file of table.files) {
      const source = this.moduleSources.get(file.hash);
      if (source === undefined) return `no source for module ${file.id} (hash ${file.hash}: not sent, not cached)`;
      files.push({ ...file, source });
    }
    // Used just now: the least recently used sources go first.
    for (const file of files) this.rememberModuleSource(file.hash, file.source);
    return { hash: tableHash, main: table.main, files };
  }

  private rememberModuleSource(hash: string, source: string): void {
    const known = this.moduleSources.get(hash);
    if (known !== undefined) {
      this.moduleSources.delete(hash);
      this.moduleSources.set(hash, known);
      return;
    }
    this.moduleSources.set(hash, source);
    this.moduleSourceChars += source.length;
    while (this.moduleSources.size > maxCachedModuleSources || (this.moduleSourceChars > maxCachedModuleSourceChars && this.moduleSources.size > 1)) {
      const [oldestHash, oldest] = this.moduleSources.entries().next().value as [string, string];
      this.moduleSources.delete(oldestHash);
      this.moduleSourceChars -= oldest.length;
    }
  }

  private onOutcome(active: ActiveTask, outcome: SliceOutcome, weight: ValueWeight): void {
    if (active.dropped) return;
    active.outstanding.delete(outcome.sliceIndex);
    if (outcome.status === 'ok') {
      active.ok++;
      this.stats.slicesOk++;
    } else {
      active.failed++;
      this.stats.slicesFailed++;
      if (active.failed === 1) {
        this.log.warn(`task ${active.task.taskId}: slice ${outcome.sliceIndex} failed: ${outcome.error.code}: ${outcome.error.message}`, {
          event: 'slice_error',
          taskId: active.task.taskId,
          jobId: active.task.jobId,
          sliceIndex: outcome.sliceIndex,
          code: outcome.error.code,
        });
      }
    }
    active.buffer.push(outcome);
    active.weights.push(weight);
    active.bufferBytes += weight.bytes;
    if (active.buffer.length >= this.timing.maxOutcomesPerMessage || active.bufferBytes >= messageBudget.bytes) this.flushTask(active);
    else this.scheduleResultFlush();
  }

  private onRunDone(active: ActiveTask): void {
    active.runDone = true;
    this.flushTask(active);
    this.maybeFinish(active);
    this.pump();
  }

  private maybeFinish(active: ActiveTask): void {
    if (active.finished || !active.runDone || active.buffer.length > 0 || active.sending > 0) return;
    active.finished = true;
    this.tasks.delete(active.task.taskId);
    this.tasksByJob.delete(active.job);
    if (![...this.tasks.values()].some((other) => other.task.jobId === active.task.jobId)) this.state.idle(active.task.jobId);
    this.stats.tasksFinished++;
    if (active.dropped) return;
    const { taskId, jobId } = active.task;
    const seconds = ((performance.now() - active.startedAt) / 1000).toFixed(1);
    const refusedCodes = [...active.refusedCodes].map(([code, count]) => `${count} ${code}`).join(', ');
    let text = `task ${taskId} finished in ${seconds} s: ${active.ok} ok, ${active.failed} errors; ${active.accepted} accepted, ${active.refused} refused`;
    if (refusedCodes) text += ` (${refusedCodes})`;
    if (active.returned > 0) text += `; ${active.returned} returned`;
    if (active.unacknowledged > 0) text += `; ${active.unacknowledged} unacknowledged`;
    this.log.info(text, {
      event: 'task_finished',
      taskId,
      jobId,
      ok: active.ok,
      errors: active.failed,
      accepted: active.accepted,
      refused: active.refused,
      returned: active.returned,
    });
  }

  /** Marks tasks as going nowhere and stops their slices in the pool. Returns how many slices were unfinished. */
  private dropTasks(tasks: ActiveTask[]): number {
    let unfinished = 0;
    const jobs = new Set<string>();
    for (const active of tasks) {
      if (active.dropped) continue;
      active.dropped = true;
      active.buffer = [];
      active.weights = [];
      active.bufferBytes = 0;
      unfinished += active.outstanding.size;
      active.outstanding.clear();
      jobs.add(active.task.jobId);
    }
    for (const jobId of jobs) this.pool.cancelJob(jobId);
    return unfinished;
  }

  private onJobStop(raw: unknown): void {
    const parsed = JobStopEventSchema.safeParse(raw);
    if (!parsed.success) {
      this.log.warn(`ignored a malformed job:stop: ${z.prettifyError(parsed.error)}`, { event: 'invalid_message', message: 'job:stop' });
      return;
    }
    const { jobId } = parsed.data;
    const dropped = this.dropTasks([...this.tasks.values()].filter((active) => active.task.jobId === jobId));
    this.pool.cancelJob(jobId);
    this.events.delete(jobId);
    this.log.info(`job ${jobId} was stopped by the scheduler${dropped > 0 ? `; dropped ${dropped} unfinished slices` : ''}`, {
      event: 'job_stopped',
      jobId,
      droppedSlices: dropped,
    });
  }

  // ---------------------------------------------------------------- results

  private scheduleResultFlush(): void {
    if (this.resultTimer !== null) return;
    this.resultTimer = setTimeout(() => {
      this.resultTimer = null;
      for (const active of this.tasks.values()) this.flushTask(active);
      this.pump();
    }, this.timing.resultFlushMs);
  }

  private flushTask(active: ActiveTask): void {
    if (active.buffer.length === 0) return;
    // A slice's state operations are answered before its result goes: when the job ends, its state is final.
    const stateSettled = this.state.settled(active.task.jobId);
    if (stateSettled !== null && !active.dropped) {
      if (!this.waitingForState.has(active)) {
        this.waitingForState.add(active);
        void stateSettled.then(() => {
          this.waitingForState.delete(active);
          this.flushTask(active);
          this.maybeFinish(active);
        });
      }
      return;
    }
    // Without a connection the outcomes wait in the buffer: the next connection sends them (onConnect).
    if (!this.connected && !active.dropped) return;
    const outcomes = active.buffer;
    const weights = active.weights;
    active.buffer = [];
    active.weights = [];
    active.bufferBytes = 0;
    if (active.dropped) return;
    // A slice's console and custom events go out before its result, so that a client never
    // sees a job complete and then hears from its slices.
    if (this.events.has(active.task.jobId)) this.flushEvents(active.task.jobId);
    for (const [start, end] of splitByWeight(weights, this.timing.maxOutcomesPerMessage)) {
      const whole = start === 0 && end === outcomes.length;
      this.sendResults(active, whole ? outcomes : outcomes.slice(start, end), whole ? weights : weights.slice(start, end), 1);
    }
  }

  /**
   * Outcomes sent on a connection that was lost before they were acknowledged go back to their
   * task's buffer, for the next connection. The scheduler may have stored them meanwhile: sent
   * again, they are refused (already claimed) and stored only once either way.
   */
  private keepForNextConnection(active: ActiveTask, outcomes: SliceOutcome[], weights: ValueWeight[]): void {
    active.buffer.push(...outcomes);
    active.weights.push(...weights);
    for (const weight of weights) active.bufferBytes += weight.bytes;
  }

  /** Sends `outcomes` again after a backoff with jitter, holding the task open until then. */
  private resendLater(active: ActiveTask, outcomes: SliceOutcome[], weights: ValueWeight[], attempt: number): void {
    const connection = this.connection;
    active.sending++;
    this.sendsInFlight++;
    const delay = Math.min(busyRetryMaxDelayMs, busyRetryDelayMs * 2 ** (attempt - 1)) * (0.5 + Math.random());
    setTimeout(() => {
      active.sending--;
      this.sendsInFlight--;
      if (connection === this.connection && this.connected && !active.dropped) {
        this.sendResults(active, outcomes, weights, attempt + 1);
        return;
      }
      if (!active.dropped && !this.connected) this.keepForNextConnection(active, outcomes, weights);
      else if (!active.dropped) this.sendResults(active, outcomes, weights, 1);
      this.maybeFinish(active);
      this.pump();
    }, delay).unref?.();
  }

  private sendResults(active: ActiveTask, outcomes: SliceOutcome[], weights: ValueWeight[], attempt: number): void {
    const { taskId, jobId } = active.task;
    const connection = this.connection;
    active.sending++;
    this.sendsInFlight++;
    this.socket
      .timeout(this.timing.ackTimeoutMs)
      .emitWithAck('task:results', { taskId, jobId, outcomes })
      .then(
        (raw: unknown) => {
          const reply = ResultsReplySchema.safeParse(raw);
          if (!reply.success) {
            active.unacknowledged += outcomes.length;
            this.log.warn(`task ${taskId}: ignored a malformed results acknowledgement: ${z.prettifyError(reply.error)}`, {
              event: 'invalid_message',
              message: 'task:results ack',
            });
            return;
          }
          if (reply.data.ok === false && reply.data.code === ErrorCode.EUNAVAILABLE && attempt < maxBusyResultAttempts) {
            // The scheduler was busy, not refusing: the same results go again after a backoff
            // (the task stays unfinished meanwhile, so nothing is reported as lost).
            this.resendLater(active, outcomes, weights, attempt);
            return;
          }
          if (reply.data.ok === false) {
            active.refused += outcomes.length;
            this.stats.refused += outcomes.length;
            active.refusedCodes.set(reply.data.code, (active.refusedCodes.get(reply.data.code) ?? 0) + outcomes.length);
            this.log.warn(`task ${taskId}: the scheduler refused ${outcomes.length} results: ${reply.data.code}: ${reply.data.message}`, {
              event: 'results_refused',
              taskId,
              code: reply.data.code,
            });
            return;
          }
          active.accepted += reply.data.accepted.length;
          this.stats.accepted += reply.data.accepted.length;
          active.refused += reply.data.refused.length;
          this.stats.refused += reply.data.refused.length;
          for (const { code } of reply.data.refused) active.refusedCodes.set(code, (active.refusedCodes.get(code) ?? 0) + 1);
        },
        (error: unknown) => {
          if (attempt < maxResultAttempts && connection === this.connection && this.connected && !active.dropped) {
            this.sendResults(active, outcomes, weights, attempt + 1);
            return;
          }
          if (!active.dropped && (connection !== this.connection || !this.connected)) {
            // The connection went while they were on their way: the next one sends them.
            this.keepForNextConnection(active, outcomes, weights);
            if (this.connected) this.flushTask(active);
            return;
          }
          active.unacknowledged += outcomes.length;
          this.log.warn(`task ${taskId}: results for ${outcomes.length} slices were not acknowledged: ${messageOf(error)}`, {
            event: 'results_unacknowledged',
            taskId,
          });
        },
      )
      .finally(() => {
        active.sending--;
        this.sendsInFlight--;
        this.maybeFinish(active);
        this.pump();
      });
  }

  /** Gives slices back to the scheduler; resolves when acknowledged (or not, after ackTimeoutMs). */
  private async returnSlices(taskId: string, jobId: string, sliceIndexes: number[], why: string): Promise<void> {
    if (sliceIndexes.length === 0 || !this.connected) return;
    let returned = 0;
    for (let i = 0; i < sliceIndexes.length; i += Limits.maxSlicesPerTask) {
      const part = sliceIndexes.slice(i, i + Limits.maxSlicesPerTask);
      try {
        const raw: unknown = await this.socket.timeout(this.timing.ackTimeoutMs).emitWithAck('task:return', { taskId, jobId, sliceIndexes: part });
        const reply = ReturnReplySchema.safeParse(raw);
        if (!reply.success) {
          this.log.warn(`task ${taskId}: ignored a malformed return acknowledgement`, { event: 'invalid_message', message: 'task:return ack' });
        } else if (reply.data.ok === false) {
          this.log.warn(`task ${taskId}: the scheduler refused the returned slices: ${reply.data.code}: ${reply.data.message}`, {
            event: 'return_refused',
            taskId,
            code: reply.data.code,
          });
        } else {
          returned += part.length;
        }
      } catch (error) {
        this.log.warn(`task ${taskId}: returning ${part.length} slices was not acknowledged: ${messageOf(error)}`, { event: 'return_unacknowledged', taskId });
      }
    }
    this.stats.returned += returned;
    this.log.info(`task ${taskId}: returned ${returned} of ${sliceIndexes.length} slices (${why})`, {
      event: 'task_returned',
      taskId,
      jobId,
      returned,
      reason: why,
    });
  }

  // ---------------------------------------------------------------- console and custom events

  private queueEvent(jobId: string, event: EventBuffer['items'][number]): void {
    let buffer = this.events.get(jobId);
    if (buffer === undefined) {
      buffer = { items: [], bytes: 0, dropped: 0 };
      this.events.set(jobId, buffer);
    }
    if (buffer.items.length >= maxBufferedEventsPerJob || buffer.bytes + event.weight.bytes > maxBufferedEventBytesPerJob) {
      buffer.dropped++;
    } else {
      buffer.bytes += event.weight.bytes;
      buffer.items.push(event);
    }
    this.eventTimer ??= setTimeout(() => this.flushEvents(), this.timing.eventFlushMs);
  }

  /** Sends the buffered events of one job, or of all jobs; without a connection they wait for the next one (bounded per job). */
  private flushEvents(jobId?: string): void {
    if (!this.connected) {
      if (jobId === undefined) this.clearTimer('eventTimer');
      return;
    }
    let buffers: Array<[string, EventBuffer]>;
    if (jobId === undefined) {
      this.clearTimer('eventTimer');
      buffers = [...this.events];
      this.events.clear();
    } else {
      const buffer = this.events.get(jobId);
      if (buffer === undefined) return;
      this.events.delete(jobId);
      buffers = [[jobId, buffer]];
      if (this.events.size === 0) this.clearTimer('eventTimer');
    }
    for (const [jobId, buffer] of buffers) {
      const items = buffer.items;
      for (const [start, end] of splitByWeight(items.map((event) => event.weight), maxBufferedEventsPerJob)) {
        const console: ConsoleEntry[] = [];
        const custom: CustomEvent[] = [];
        for (let i = start; i < end; i++) {
          const event = items[i];
          if (event.kind === 'console') console.push(event.item);
          else custom.push(event.item);
        }
        try {
          this.socket.emit('task:events', { jobId, console, custom });
        } catch (error) {
          // Cannot happen with bounded events; if it does, the events are lost, never the worker.
          this.log.warn(`job ${jobId}: could not send ${end - start} console/custom events: ${messageOf(error)}`, { event: 'events_unsent', jobId });
        }
      }
      if (buffer.dropped > 0) {
        this.log.warn(`job ${jobId}: dropped ${buffer.dropped} console/custom events (more than ${maxBufferedEventsPerJob} or ${maxBufferedEventBytesPerJob} bytes in ${this.timing.eventFlushMs} ms)`, {
          event: 'events_dropped',
          jobId,
          dropped: buffer.dropped,
        });
      }
    }
  }

  // ---------------------------------------------------------------- summary

  private sampleRate(): void {
    const now = performance.now();
    const done = this.slicesDone;
    const seconds = (now - this.rateSample.at) / 1000;
    if (seconds <= 0) return;
    const instant = (done - this.rateSample.done) / seconds;
    this.rate = this.rate === 0 ? instant : this.rate * 0.5 + instant * 0.5;
    this.rateSample = { at: now, done };
    // The starvation boost fades unless the sandboxes keep running dry.
    this.starvedTarget = Math.floor(this.starvedTarget / 2);
  }

  private logSummary(final: boolean): void {
    const now = performance.now();
    const done = this.slicesDone;
    const seconds = (now - this.summarySample.at) / 1000;
    const delta = done - this.summarySample.done;
    this.summarySample = { at: now, done };
    const idle = !final && delta === 0 && this.tasks.size === 0;
    const earnings = this.options.earnings;
    if (idle) {
      // Payments settle after the work: an idle worker still says when its earnings change.
      if (earnings) void earnings.refresh().then((snapshot) => this.logEarningsChange(earnings, snapshot), () => undefined);
      return;
    }
    const perSecond = seconds > 0 ? Math.round(delta / seconds) : 0;
    const { slicesOk, slicesFailed, accepted, refused, returned, tasksFinished } = this.stats;
    const text = final
      ? `done: ${done} slices (${slicesFailed} errors) in ${tasksFinished} tasks; ${accepted} accepted, ${refused} refused, ${returned} returned`
      : `${done} slices done (${slicesFailed} errors), ${perSecond} slices/s, ${this.pool.pending} in the sandboxes, ${this.tasks.size} tasks`;
    const fields = {
      event: final ? 'final_summary' : 'summary',
      slicesDone: done,
      slicesOk,
      slicesFailed,
      slicesPerSecond: perSecond,
      pending: this.pool.pending,
      tasks: this.tasks.size,
      accepted,
      refused,
      returned,
    };
    if (!earnings) {
      this.log.info(text, fields);
      return;
    }
    const withEarnings = (snapshot: EarningsSnapshot | undefined): void => {
      this.shownEarnings = snapshot?.balanceUnits ?? this.shownEarnings;
      this.log.info(`${text}; ${describeEarnings(earnings)}`, { ...fields, earningsDcc: snapshot?.balance, earningsChangeDcc: snapshot?.change });
    };
    // The final line shows what is known (shutdown does not wait for the bank); the others read it first (at most every 10 s).
    if (final) withEarnings(earnings.latest());
    else void earnings.refresh().then(withEarnings, () => withEarnings(earnings.latest()));
  }

  private logEarningsChange(earnings: EarningsSource, snapshot: EarningsSnapshot | undefined): void {
    if (snapshot === undefined || snapshot.balanceUnits === this.shownEarnings || this.stopping) return;
    this.shownEarnings = snapshot.balanceUnits;
    this.log.info(describeEarnings(earnings), { event: 'earnings', earningsDcc: snapshot.balance, earningsChangeDcc: snapshot.change });
  }

  // ---------------------------------------------------------------- shutdown

  private async shutdown(): Promise<void> {
    this.stopping = true;
    this.waitingForWork = false;
    this.clearTimer('pollTimer');
    const returns: Array<Promise<void>> = [];

    const withdrawn = this.pool.withdraw();
    let unstarted = 0;
    for (const group of withdrawn) {
      const active = this.tasksByJob.get(group.job);
      if (active === undefined || active.dropped) continue;
      const indexes = group.slices.map((slice) => slice.sliceIndex);
      for (const index of indexes) active.outstanding.delete(index);
      active.returned += indexes.length;
      unstarted += indexes.length;
      returns.push(this.returnSlices(active.task.taskId, active.task.jobId, indexes, 'shutting down'));
    }
    const running = this.pool.pending;
    this.log.info(`shutting down: returning ${unstarted} unstarted slices, waiting for ${running} running ones`, {
      event: 'shutdown',
      returned: unstarted,
      running,
    });

    const drained = await waitFor(() => this.pool.pending === 0, this.timing.drainTimeoutMs);
    if (!drained) {
      this.log.warn(`running slices did not finish within ${this.timing.drainTimeoutMs} ms; stopping and returning them`, { event: 'shutdown_timeout' });
      const jobs = new Set<string>();
      for (const active of this.tasks.values()) {
        if (active.dropped) continue;
        jobs.add(active.task.jobId);
        const indexes = [...active.outstanding];
        active.outstanding.clear();
        active.returned += indexes.length;
        returns.push(this.returnSlices(active.task.taskId, active.task.jobId, indexes, 'shutting down, stopped'));
      }
      for (const jobId of jobs) this.pool.cancelJob(jobId);
    }

    const returnsDone = Promise.all(returns).then(() => true);
    if (!(await Promise.race([returnsDone, sleep(this.timing.flushTimeoutMs).then(() => false)]))) {
      this.log.warn('some returned slices were not acknowledged before shutdown', { event: 'shutdown_unacknowledged_returns' });
    }
    for (const active of this.tasks.values()) this.flushTask(active);
    this.flushEvents();
    const flushed = await waitFor(() => this.tasks.size === 0, this.timing.flushTimeoutMs);
    if (!flushed) this.log.warn('some results were not acknowledged before shutdown', { event: 'shutdown_unflushed' });

    this.clearTimer('resultTimer');
    this.clearTimer('eventTimer');
    if (this.summaryTimer) clearInterval(this.summaryTimer);
    if (this.rateTimer) clearInterval(this.rateTimer);
    this.summaryTimer = null;
    this.rateTimer = null;
    this.logSummary(true);
    this.closed = true;
    this.clearTimer('reconnectTimer');
    for (const socket of this.sockets.values()) socket.disconnect();
  }

  private clearTimer(name: 'pollTimer' | 'resultTimer' | 'eventTimer' | 'reconnectTimer'): void {
    const timer = this[name];
    if (timer !== null) clearTimeout(timer);
    this[name] = null;
  }
}

function messageOf(error: unknown): string {
  if (error !== null && typeof error === 'object' && typeof (error as { message?: unknown }).message === 'string') return (error as { message: string }).message;
  return String(error);
}

/** A weight for a value that came without one (a pool that does not give weights): its JSON text's, counted in full. */
function weightOf(value: unknown): ValueWeight {
  let text: string;
  try {
    text = JSON.stringify(value) ?? 'null';
  } catch {
    return { bytes: messageBudget.bytes, nodes: messageBudget.nodes };
  }
  return { bytes: Buffer.byteLength(text, 'utf8') + 96, nodes: Math.ceil((text.length + 1) / 2) + 8 };
}

/**
 * Cuts a run of items into [start, end) groups of at most `maxCount` whose weights add up to at
 * most messageBudget; an item heavier than that alone goes alone (the sandbox keeps any one
 * result or event well under it).
 */
export function splitByWeight(weights: readonly ValueWeight[], maxCount: number): Array<[number, number]> {
  const groups: Array<[number, number]> = [];
  let start = 0;
  let bytes = 0;
  let nodes = 0;
  for (let i = 0; i < weights.length; i++) {
    const weight = weights[i];
    if (i > start && (i - start >= maxCount || bytes + weight.bytes > messageBudget.bytes || nodes + weight.nodes > messageBudget.nodes)) {
      groups.push([start, i]);
      start = i;
      bytes = 0;
      nodes = 0;
    }
    bytes += weight.bytes;
    nodes += weight.nodes;
  }
  if (weights.length > start) groups.push([start, weights.length]);
  return groups;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** Resolves true once the condition holds, false when it did not within ms. */
async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return true;
}
