import { io, type Socket } from 'socket.io-client';
import type { z } from 'zod';
import {
  CommuneError,
  DeployReplySchema,
  ErrorCode,
  ErrorReplySchema,
  JobAcceptedEventSchema,
  JobConsoleEventSchema,
  JobCustomEventSchema,
  JobEndEventSchema,
  JobEventPageSchema,
  JobEventsReplySchema,
  JobResultsEventSchema,
  JobSliceErrorEventSchema,
  JobStatusEventSchema,
  JobStatusSchema,
  Namespaces,
  OwnerRequestHeaders,
  OwnerRequestSchema,
  ReadGrantSchema,
  ReadTokenHeader,
  ResultsPageSchema,
  SignedKind,
  signRequest,
  newId,
  Limits,
  type ClientToSchedulerEvents,
  type ConsoleEntry,
  type CustomEvent,
  type DeployRequest,
  type JobActionRequest,
  type JobEventCursor,
  type JobEventEntry,
  type JobEventPage,
  type JobStatus,
  type ResultsPage,
  type SchedulerToClientEvents,
  type SliceError,
  type SliceResult,
  StateChangeEventSchema,
  StateSnapshotReplySchema,
} from '@commune/protocol';
import { JobEventOrder, type OrderedEvent } from './job-event-order.js';

/**
 * The SDK's link to a scheduler: the `/client` socket.io namespace for deploys, actions and
 * job events, and REST on the same base URL for status and result pages. The socket opens on
 * the first deploy and closes when no job needs it, so a program whose jobs are done exits.
 *
 * Given several URLs (replicas of one scheduler sharing PostgreSQL and Redis), the link uses one
 * at a time and moves to the next when the one it is on dies (connection refused or closed, no
 * ping within the server's ping timeout, a request unanswered within ackTimeoutMs): it connects
 * to the next URL, follows its jobs there again (subscribe with their read tokens) and tells
 * their handles (`onDisconnect`, `onReconnect`).
 *
 * A job's events reach its handles in the order of the job's event log (JobEventOrder): the
 * re-subscribe after a reconnect asks for the events after the last one delivered (`since`) and
 * delivers them before any newer one; a hole in the live events is fetched from the log. Only
 * when the log no longer has what was missed (the scheduler's Redis lost it, or it was trimmed)
 * do the handles read status and results again over REST (`onReconnect` without `caughtUp`, or
 * `onEventsMissed`).
 */

/** The part of a job's status the SDK acts on: JobStatus from the scheduler, or a local run's. */
export type RunSnapshot = Pick<JobStatus, 'runStatus' | 'total' | 'distributed' | 'computed' | 'failure' | 'meanSliceProfile'>;

/** Where a connection delivers the events of one job. */
export interface JobEventSink {
  onStatus(status: RunSnapshot): void;
  onResults(results: SliceResult[]): void;
  onConsole(entries: ConsoleEntry[]): void;
  onCustom(events: CustomEvent[]): void;
  onSliceError(sliceIndex: number, error: SliceError): void;
  /** The job finished, was cancelled or failed. May be called more than once; the first call counts. */
  onEnd(status: RunSnapshot): void;
  /** spec "Shared State": the job's state changed (after a state:subscribe). */
  onStateChange?(version: number, state: string): void;
  /** The link lost its scheduler (once per outage): events may be missed until onReconnect. */
  onDisconnect?(event: LinkEvent): void;
  /**
   * The link follows the job again, on `event.scheduler`, after an onDisconnect. With
   * `event.caughtUp` the events sent meanwhile follow (from the job's event log, results
   * included); without it some may be lost: read what they carried (results) again.
   */
  onReconnect?(event: LinkEvent): void;
  /**
   * Some of the job's events were lost while the link stayed up (the scheduler's Redis lost the
   * job's event log, or a hole could not be fetched): read its results again; the status follows
   * as onStatus (and onEnd when it ended). The events after the loss are delivered as they come.
   */
  onEventsMissed?(): void;
}

/** What onDisconnect / onReconnect say: the scheduler URL concerned and, for a disconnect, why. */
export interface LinkEvent {
  scheduler: string;
  reason?: string;
  /** onReconnect: every event missed while away is delivered after this (replayed from the job's event log). */
  caughtUp?: boolean;
}

export interface DeployAccepted {
  /** The job's read capability (protocol ReadTokenSchema): what reads its status, results, events and state. */
  readToken?: string;
  jobId: string;
  total: number;
  receipt: string;
}

/** What a job handle needs from a scheduler; a test can supply its own. */
export interface SchedulerLink {
  /** The scheduler URL in use now (one of several replicas, see SchedulerConnection). */
  readonly url: URL;
  /** Every scheduler URL the link may use. */
  readonly urls?: readonly URL[];
  /**
   * Sends a signed deploy. Events of not-yet-acknowledged jobs are held from now on; after a
   * successful deploy the caller must call attach() (which delivers them) for the returned id.
   */
  deploy(request: DeployRequest): Promise<DeployAccepted>;
  /**
   * Starts delivering the job's events to `sink`, first those that arrived before the ack.
   * `results: false` (a non-collating job without `result` listeners) keeps its results off the
   * socket after a reconnect, as the deploy did.
   */
  attach(jobId: string, sink: JobEventSink, options?: { results?: boolean }): void;
  /**
   * Follows a job deployed elsewhere (compute.resume): subscribes to its events (its results too
   * unless `results` is false), delivers them to `sink`, and resolves with its status. Reads with
   * the job's read token when this link knows one (its deploy, rememberReadToken), else with a
   * read grant signed by `owner` (answered with a token kept for later reads).
   */
  follow(jobId: string, sink: JobEventSink, results: boolean, owner?: RequestSigner): Promise<JobStatus>;
  /** Reads of `jobId` from now on carry `readToken` (one the job's owner handed on). */
  rememberReadToken?(jobId: string, readToken: string): void;
  /** The read token this link reads `jobId` with, if it has one. */
  readTokenOf?(jobId: string): string | undefined;
  /** Starts pushing a followed job's results to `sink` (a `result` listener was added to a non-collating job). */
  wantResults(jobId: string, sink?: JobEventSink): void;
  /**
   * A REST request relative to the scheduler URL. With a signer it is owner-signed
   * (protocol OwnerRequestSchema). Resolves with the JSON body; a scheduler error reply rejects
   * with its code.
   */
  rest(method: 'GET' | 'DELETE' | 'POST', relativePath: string, signer?: RequestSigner, body?: unknown): Promise<unknown>;
  /** Stops delivering the job's events to `sink` (to every sink when omitted). */
  detach(jobId: string, sink?: JobEventSink): void;
  jobAction(request: JobActionRequest): Promise<JobStatus>;
  /** GET /jobs/:id with the job's read token, else signed by `owner` when given (EPERM without either). */
  getStatus(jobId: string, owner?: () => Promise<RequestSigner>): Promise<JobStatus>;
  getResultsPage(jobId: string, after: number, limit: number): Promise<ResultsPage>;
  /** spec "Shared State": a state event with an acknowledgement (see shared-state.ts); the raw reply. */
  stateRequest?(name: 'state:op' | 'state:get' | 'state:subscribe', payload: unknown): Promise<unknown>;
}

export interface ConnectionOptions {
  /** How long a deploy or action waits for its acknowledgement (including connecting). */
  ackTimeoutMs?: number;
  /** How long one REST request may take. */
  requestTimeoutMs?: number;
  /** Events held for jobs whose deploy is not acknowledged yet, over all such jobs. */
  maxHeldEvents?: number;
  /** Per job, events held while an earlier one is awaited or fetched from the job's event log (see JobEventOrder). */
  maxOutOfOrderEvents?: number;
  /** How long an event that came before its predecessor waits for it before the hole is fetched from the log. */
  eventHoleWaitMs?: number;
  /** For tests: makes the socket instead of socket.io-client. */
  socketFactory?: (url: string) => ClientSocket;
}

export type ClientSocket = Pick<Socket<SchedulerToClientEvents, ClientToSchedulerEvents>, 'on' | 'emit' | 'timeout' | 'connect' | 'disconnect' | 'connected'>;

/** What signs owner requests: a wallet's two methods. */
export interface RequestSigner {
  getAddress(): Promise<string>;
  signMessage(message: string): Promise<string>;
}

const defaults = { ackTimeoutMs: 30_000, requestTimeoutMs: 30_000, maxHeldEvents: 100_000, maxOutOfOrderEvents: 1000, eventHoleWaitMs: 500 } as const;
/** Fetches of one hole in a job's events that may fail in a row before those events count as missed. */
const maxHoleFetchAttempts = 3;
/**
 * With several scheduler URLs: after every URL failed in a row, wait this long (doubling per
 * round, at most failoverMaxDelayMs) before the next round; within a round the next URL is tried at once.
 */
const failoverBaseDelayMs = 250;
const failoverMaxDelayMs = 5_000;
/** Requests sent again on the next replica when the socket they were sent on is given up (idempotent ones). */
const resendable = new Set(['deploy', 'subscribe', 'state:get', 'state:subscribe']);
/**
 * A large deploy the scheduler is too busy for (EUNAVAILABLE: its budget of large messages in
 * flight is spent) is sent again this many times, after 250 ms, 500 ms, 1 s, ... A deploy is
 * idempotent (a resent one gets the first answer), so sending it again is safe.
 */
const largeDeployRetries = 5;
/** Framing around a message's JSON: a deploy this close to Limits.largeMessageBytes counts as large. */
const frameAllowance = 1024;
/** After the server closes our socket, wait this long before reconnecting. */
const serverDisconnectRetryMs = 1_000;

type HeldEvent = (sink: JobEventSink) => void;
/** A job event as it arrived: the job, its place in the job's event log, and how to deliver it. */
interface RoutedEvent {
  jobId: string;
  cursor?: JobEventCursor;
  deliver: HeldEvent;
}

export class SchedulerConnection implements SchedulerLink {
  /** Every scheduler URL, in the order given; `url` is the one in use. */
  readonly urls: readonly URL[];
  private current = 0;
  /** Failed connections in a row (several URLs only): decides the delay before the next attempt. */
  private failures = 0;
  private failoverTimer: ReturnType<typeof setTimeout> | undefined;
  /** When the pending failover timer connects to the next URL. */
  private failoverAt = 0;
  /** The link has lost its scheduler and not yet found one (onDisconnect said so). */
  private down = false;
  /** Per socket, what rejects the requests waiting on it when it is given up. */
  private readonly abandon = new WeakMap<ClientSocket, Promise<never>>();
  private readonly abandonWith = new WeakMap<ClientSocket, (error: Error) => void>();
  private readonly options: Required<Omit<ConnectionOptions, 'socketFactory'>> & Pick<ConnectionOptions, 'socketFactory'>;
  private socket: ClientSocket | undefined;
  /** Per job, every handle following it (a job and its compute.resume() handle may both). */
  private readonly sinks = new Map<string, SinkHub>();
  /** Jobs whose state changes this connection asked for (state:subscribe): followed again after a reconnect. */
  private readonly followedStates = new Set<string>();
  /** Each job's read token (from its deploy, a read grant or the program): sent with every read of the job. */
  private readonly readTokens = new Map<string, string>();
  private readonly held = new Map<string, RoutedEvent[]>();
  private heldCount = 0;
  private pendingDeploys = 0;
  private pendingActions = 0;
  private lastConnectError: string | undefined;
  /** The large deploy in flight: the scheduler takes one message of at least Limits.largeMessageBytes per connection at a time. */
  private largeDeploy: Promise<void> = Promise.resolve();

  constructor(url: URL | readonly URL[], options: ConnectionOptions = {}) {
    const list = Array.isArray(url) ? (url as readonly URL[]) : [url as URL];
    if (list.length === 0) throw new CommuneError(ErrorCode.EINVAL, 'a scheduler connection needs at least one URL');
    // A trailing slash makes relative REST paths land under any path prefix of the base URL.
    this.urls = list.map((each) => new URL(each.href.endsWith('/') ? each.href : each.href + '/'));
    this.options = { ...defaults, ...options };
  }

  get url(): URL {
    return this.urls[this.current];
  }

  // ------------------------------------------------------------------ socket

  private ensureSocket(): ClientSocket {
    if (this.socket) return this.socket;
    const namespaceUrl = new URL(Namespaces.client, this.url).href;
    const several = this.urls.length > 1;
    // With several URLs the link reconnects itself (to the next one); with one, socket.io does.
    const socket: ClientSocket = this.options.socketFactory
      ? this.options.socketFactory(namespaceUrl)
      : io(namespaceUrl, { transports: ['websocket'], forceNew: true, ...(several ? { reconnection: false } : {}) });
    let abandonWith!: (error: Error) => void;
    const abandoned = new Promise<never>((_, reject) => {
      abandonWith = reject;
    });
    abandoned.catch(() => undefined);
    this.abandon.set(socket, abandoned);
    this.abandonWith.set(socket, abandonWith);
    socket.on('connect', () => {
      if (this.socket !== socket) return;
      this.lastConnectError = undefined;
      this.failures = 0;
      this.resubscribe(socket);
    });
    socket.on('connect_error', (error: Error) => {
      if (this.socket !== socket) return;
      this.lastConnectError = error.message;
      this.lost(`cannot connect to ${this.url.href}: ${error.message}`);
      if (several) this.failover(socket);
    });
    socket.on('disconnect', (reason: string) => {
      if (this.socket !== socket || reason === 'io client disconnect') return;
      this.lost(`the connection to ${this.url.href} closed (${reason})`);
      if (several) {
        this.failover(socket);
        return;
      }
      // socket.io reconnects by itself after transport failures, but not when the server closed
      // the socket (a replica shutting down does that): reconnect then too while jobs are in flight.
      if (reason === 'io server disconnect' && this.busy()) {
        setTimeout(() => {
          if (this.socket === socket && !socket.connected && this.busy()) socket.connect();
        }, serverDisconnectRetryMs);
      }
    });
    for (const name of Object.keys(jobEventRoutes) as Array<JobEventEntry['name']>) {
      this.listen(socket, name, jobEventSchemas[name], (event) => routeJobEvent({ name, event } as JobEventEntry));
    }
    this.listen(socket, 'state:change', StateChangeEventSchema, (event) => ({ jobId: event.jobId, deliver: (sink) => sink.onStateChange?.(event.version, event.state) }));
    this.socket = socket;
    return socket;
  }

  private listen<S extends z.ZodType>(
    socket: ClientSocket,
    name: keyof SchedulerToClientEvents,
    schema: S,
    route: (event: z.infer<S>) => RoutedEvent,
  ): void {
    (socket.on as (name: string, listener: (raw: unknown) => void) => void)(name, (raw: unknown) => {
      const parsed = schema.safeParse(raw);
      if (!parsed.success) {
        process.emitWarning(`@commune/client ignored a malformed ${name} from ${this.url.href}: ${parsed.error.message}`);
        return;
      }
      this.dispatch(route(parsed.data));
    });
  }

  private dispatch(event: RoutedEvent): void {
    const { jobId } = event;
    const hub = this.sinks.get(jobId);
    if (hub) {
      hub.order.offer(toOrdered(event, hub));
      return;
    }
    // The scheduler joins us to a job's room before it acks the deploy, so a job's first
    // events can beat its id to us. Hold them (bounded) until attach(); results dropped here
    // are fetched over REST when the job ends, so dropping never loses one.
    if (this.pendingDeploys === 0 || this.heldCount >= this.options.maxHeldEvents) return;
    const list = this.held.get(jobId) ?? [];
    list.push(event);
    this.held.set(jobId, list);
    this.heldCount++;
  }

  /**
   * The link lost its scheduler while jobs were in flight: tell their handles, once per outage
   * (until a connection is made again).
   */
  private lost(reason: string): void {
    if (this.down || !this.busy()) return;
    this.down = true;
    const event: LinkEvent = { scheduler: this.url.href, reason };
    for (const hub of [...this.sinks.values()]) hub.onDisconnect(event);
  }

  /**
   * Gives up `socket` (several URLs): requests waiting on it are sent again on the next replica
   * when idempotent, else fail; the next URL is tried at once, or after a delay once every URL
   * failed in a row. Nothing reconnects when no job needs the link any more.
   */
  private failover(socket: ClientSocket, reason = 'the scheduler connection was given up'): void {
    if (this.socket !== socket) return;
    this.socket = undefined;
    this.abandonWith.get(socket)?.(new Error(reason));
    socket.disconnect();
    settleAcks(socket, reason);
    this.failures++;
    this.current = (this.current + 1) % this.urls.length;
    const rounds = Math.floor(this.failures / this.urls.length);
    const delayMs = rounds === 0 ? 0 : Math.min(failoverMaxDelayMs, failoverBaseDelayMs * 2 ** (rounds - 1));
    if (this.failoverTimer) clearTimeout(this.failoverTimer);
    this.failoverAt = Date.now() + delayMs;
    this.failoverTimer = setTimeout(() => {
      this.failoverTimer = undefined;
      if (!this.socket && this.busy()) this.ensureSocket();
    }, delayMs);
  }

  /**
   * After a reconnect the socket is in no room: rejoin every job in flight, from the last event
   * delivered (`since`), and catch up: the events missed meanwhile in order, then the status.
   */
  private resubscribe(socket: ClientSocket): void {
    const wasDown = this.down;
    this.down = false;
    const scheduler = this.url.href;
    for (const [jobId, hub] of this.sinks) {
      // A follow() whose own subscribe is on its way sets the job's place in the log itself.
      if (hub.following > 0) continue;
      const since = hub.order.position();
      const token = hub.order.suspend();
      const request = { ...this.readAccessOf(jobId), jobId, ...(hub.wantsResults ? {} : { results: false }), ...(since ? { since } : {}) };
      socket
        .timeout(this.options.ackTimeoutMs)
        .emitWithAck('subscribe', request)
        .then(async (reply: unknown) => {
          const status = parseStatusReply(reply);
          // A refused re-subscribe (the job is gone from the scheduler's live state) still leaves
          // its status readable over REST: settle the job from that rather than wait forever.
          if (!status) return { status: await this.getStatus(jobId), page: undefined };
          const page = JobEventPageSchema.safeParse((reply as { events?: unknown }).events);
          return { status, page: page.success ? page.data : undefined };
        })
        .then(async ({ status, page }) => {
          if (this.sinks.get(jobId) !== hub) return;
          if (wasDown) hub.onReconnect({ scheduler, caughtUp: since !== undefined && page !== undefined && !page.gap });
          hub.onStatus(status);
          // The missed events go out before the end, so a handle hears them all before `complete`.
          if (since && page) await hub.order.catchUp(page, false, token);
          else hub.order.resume(page ? page.cursor : undefined, token);
          if (this.sinks.get(jobId) !== hub) return;
          if (status.runStatus !== 'running' && status.runStatus !== 'paused') hub.onEnd(status);
          else if (this.followedStates.has(jobId)) this.refollowState(socket, jobId);
        })
        .catch(() => {
          // A failed re-subscribe is retried on the next reconnect; the end-of-job REST
          // fetch recovers any results missed meanwhile. Meanwhile events go on in order.
          if (this.sinks.get(jobId) === hub) hub.order.resume(since, token);
        });
    }
  }

  /** The next page of a job's event log after `since` (job:events on the socket in use). */
  private async fetchEvents(jobId: string, since: JobEventCursor): Promise<JobEventPage> {
    const socket = this.socket;
    if (!socket?.connected) throw new CommuneError(ErrorCode.ESCHEDULER, 'not connected');
    const raw: unknown = await socket.timeout(this.options.ackTimeoutMs).emitWithAck('job:events', { jobId, since, ...this.readAccessOf(jobId) });
    const reply = JobEventsReplySchema.safeParse(raw);
    if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed job:events reply: ${reply.error.message}`);
    if (!reply.data.ok) throw replyError(reply.data);
    return reply.data.events;
  }

  /**
   * Events of a job were lost while the link stayed up: its handles read the results again
   * (onEventsMissed) and get the status from REST, the end too when it ended.
   */
  private eventsMissed(jobId: string, hub: SinkHub): void {
    hub.onEventsMissed();
    this.getStatus(jobId)
      .then((status) => {
        if (this.sinks.get(jobId) !== hub) return;
        hub.onStatus(status);
        if (status.runStatus !== 'running' && status.runStatus !== 'paused') hub.onEnd(status);
      })
      .catch(() => {
        // The next event, reconnect or the end of the job brings the status.
      });
  }

  /** The state room is per socket too: join it again and take the state as it is now (changes may have been missed). */
  private refollowState(socket: ClientSocket, jobId: string): void {
    socket
      .timeout(this.options.ackTimeoutMs)
      .emitWithAck('state:subscribe', { jobId, ...this.readAccessOf(jobId) })
      .then((raw: unknown) => {
        const reply = StateSnapshotReplySchema.safeParse(raw);
        if (reply.success && reply.data.ok) this.sinks.get(jobId)?.onStateChange(reply.data.version, reply.data.state);
      })
      .catch(() => {
        // Retried on the next reconnect; the final state is read when the job ends.
      });
  }

  private busy(): boolean {
    return this.sinks.size > 0 || this.pendingDeploys > 0 || this.pendingActions > 0;
  }

  private release(): void {
    if (this.busy()) return;
    this.clearHeld();
    this.down = false;
    if (this.failoverTimer) {
      clearTimeout(this.failoverTimer);
      this.failoverTimer = undefined;
    }
    if (this.socket) {
      this.socket.disconnect();
      this.socket = undefined;
    }
  }

  private clearHeld(): void {
    this.held.clear();
    this.heldCount = 0;
  }

  /**
   * An acknowledged request. With several URLs, a request whose socket is given up meanwhile
   * (its replica died) is sent again on the next one when it is idempotent (a deploy, a subscribe,
   * a state read), within the same ackTimeoutMs; an unanswered request gives its socket up.
   */
  private async request<T>(name: 'deploy' | 'job:action' | 'subscribe' | 'state:op' | 'state:get' | 'state:subscribe', payload: unknown): Promise<T> {
    const deadline = Date.now() + this.options.ackTimeoutMs;
    for (;;) {
      const socket = this.ensureSocket();
      const url = this.url.href;
      try {
        const emitter = socket.timeout(Math.max(1, deadline - Date.now())) as unknown as { emitWithAck(name: string, payload: unknown): Promise<T> };
        const abandoned = this.abandon.get(socket);
        return await (abandoned ? Promise.race([emitter.emitWithAck(name, payload), abandoned]) : emitter.emitWithAck(name, payload));
      } catch (error) {
        const givenUp = this.socket !== socket;
        if (givenUp && resendable.has(name) && Date.now() < deadline) {
          // Not before the failover's own delay: a round of dead replicas is not retried in a busy loop.
          const wait = Math.min(this.failoverAt, deadline) - Date.now();
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          if (Date.now() < deadline) continue;
        }
        const connected = socket.connected ? '' : ` (not connected${this.lastConnectError ? `: ${this.lastConnectError}` : ''})`;
        if (!givenUp && this.urls.length > 1) {
          this.lost(`the scheduler at ${url} did not answer ${name}`);
          this.failover(socket, `the scheduler at ${url} did not answer ${name}`);
        }
        throw new CommuneError(
          ErrorCode.ESCHEDULER,
          givenUp
            ? `the connection to the scheduler at ${url} was lost before it answered ${name}`
            : `the scheduler at ${url} did not answer ${name} within ${this.options.ackTimeoutMs} ms${connected}`,
          { cause: error instanceof Error ? error.message : String(error) },
        );
      }
    }
  }

  // ------------------------------------------------------------------ SchedulerLink

  async deploy(request: DeployRequest): Promise<DeployAccepted> {
    // One message carries at most maxMessageBytes; the scheduler's transport would drop a larger
    // one without an answer. Said here, before anything is sent.
    const bytes = Buffer.byteLength(JSON.stringify(request));
    if (bytes > Limits.maxMessageBytes) {
      throw new CommuneError(ErrorCode.ETOOBIG, `the deploy is ${bytes} bytes as JSON; one message carries at most ${Limits.maxMessageBytes} (maxMessageBytes): describe large input sets with a range or split the job`);
    }
    this.pendingDeploys++;
    let accepted = false;
    try {
      const raw = bytes + frameAllowance >= Limits.largeMessageBytes ? await this.deployLarge(request) : await this.request<unknown>('deploy', request);
      const reply = DeployReplySchema.safeParse(raw);
      if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed deploy reply: ${reply.error.message}`);
      if (!reply.data.ok) throw replyError(reply.data);
      accepted = true;
      this.readTokens.set(reply.data.jobId, reply.data.readToken);
      return { jobId: reply.data.jobId, total: reply.data.total, receipt: reply.data.receipt, readToken: reply.data.readToken };
    } finally {
      if (!accepted) {
        this.pendingDeploys--;
        this.release();
      }
    }
  }

  /**
   * Sends a large deploy once the previous large one on this connection was answered (the
   * scheduler answers a second one in flight with EUNAVAILABLE), again while the scheduler says
   * it is too busy for it (EUNAVAILABLE), at most largeDeployRetries times.
   */
  private async deployLarge(request: DeployRequest): Promise<unknown> {
    const previous = this.largeDeploy;
    let done!: () => void;
    this.largeDeploy = new Promise<void>((resolve) => {
      done = resolve;
    });
    await previous;
    try {
      for (let attempt = 0; ; attempt++) {
        const raw = await this.request<unknown>('deploy', request);
        if ((raw as { code?: unknown } | null)?.code !== ErrorCode.EUNAVAILABLE || attempt >= largeDeployRetries) return raw;
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    } finally {
      done();
    }
  }

  /** The job's hub; a new one starts its event order `fresh` (a deploy: its log begins at seq 1) or `awaiting` (a follow: its subscribe says where the log stands). */
  private hubOf(jobId: string, phase: 'fresh' | 'awaiting'): SinkHub {
    let hub = this.sinks.get(jobId);
    if (!hub) {
      const created: SinkHub = new SinkHub((members) => new JobEventOrder({
        fetch: (since) => this.fetchEvents(jobId, since),
        missed: () => this.eventsMissed(jobId, created),
        fromPage: (entry) => (entry.event.jobId === jobId ? toOrdered(routeJobEvent(entry), members) : null),
      }, { maxOutOfOrderEvents: this.options.maxOutOfOrderEvents, holeWaitMs: this.options.eventHoleWaitMs, maxFetchAttempts: maxHoleFetchAttempts }, phase));
      hub = created;
      this.sinks.set(jobId, hub);
    }
    return hub;
  }

  attach(jobId: string, sink: JobEventSink, options: { results?: boolean } = {}): void {
    const hub = this.hubOf(jobId, 'fresh');
    hub.members.set(sink, options.results !== false);
    this.pendingDeploys = Math.max(0, this.pendingDeploys - 1);
    const held = this.held.get(jobId);
    if (held) {
      this.held.delete(jobId);
      this.heldCount -= held.length;
      // Held events arrived for the deploying handle: they go through the job's order like any other.
      for (const event of held) {
        if (this.sinks.get(jobId) !== hub || !hub.members.has(sink)) break;
        hub.order.offer(toOrdered(event, hub));
      }
    }
    if (this.pendingDeploys === 0) this.clearHeld();
  }

  rememberReadToken(jobId: string, readToken: string): void {
    this.readTokens.set(jobId, readToken);
  }

  readTokenOf(jobId: string): string | undefined {
    return this.readTokens.get(jobId);
  }

  /** What a socket read of the job carries: its read token when known. */
  private readAccessOf(jobId: string): { readToken?: string } {
    const readToken = this.readTokens.get(jobId);
    return readToken === undefined ? {} : { readToken };
  }

  /** The owner's signed read grant (protocol ReadGrantSchema, kind read-grant). */
  private async readGrant(jobId: string, owner: RequestSigner): Promise<{ grant: { request: unknown; signature: string } }> {
    const request = ReadGrantSchema.parse({ jobId, owner: await owner.getAddress(), nonce: newId('n'), expiresAt: Date.now() + Limits.maxSignatureLifetimeMs / 2 });
    return { grant: { request, signature: await signRequest(owner, SignedKind.readGrant, request) } };
  }

  async follow(jobId: string, sink: JobEventSink, results: boolean, owner?: RequestSigner): Promise<JobStatus> {
    const fresh = !this.sinks.has(jobId);
    const hub = this.hubOf(jobId, 'awaiting');
    hub.members.set(sink, results);
    hub.following++;
    try {
      const access = this.readTokens.has(jobId) || !owner ? this.readAccessOf(jobId) : await this.readGrant(jobId, owner);
      const raw = await this.request<unknown>('subscribe', { ...access, ...(hub.wantsResults ? { jobId } : { jobId, results: false }) });
      const granted = (raw as { readToken?: unknown } | null)?.readToken;
      if (typeof granted === 'string') this.readTokens.set(jobId, granted);
      const status = parseStatusReply(raw);
      if (status) {
        // From where the log stands now: a follower starts with the job's status, not its history.
        const page = JobEventPageSchema.safeParse((raw as { events?: unknown }).events);
        if (fresh) hub.order.resume(page.success ? page.data.cursor : undefined);
        return status;
      }
      const error = ErrorReplySchema.safeParse(raw);
      throw error.success ? replyError(error.data) : new CommuneError(ErrorCode.ESCHEDULER, 'malformed subscribe reply');
    } catch (error) {
      this.detach(jobId, sink);
      throw error;
    } finally {
      hub.following--;
    }
  }

  wantResults(jobId: string, sink?: JobEventSink): void {
    const hub = this.sinks.get(jobId);
    if (!hub) return;
    const before = hub.wantsResults;
    for (const member of sink ? [sink] : [...hub.members.keys()]) if (hub.members.has(member)) hub.members.set(member, true);
    if (before || !hub.wantsResults || !this.socket?.connected) return;
    // Best effort: a lost subscribe is repeated with `results` on the next reconnect.
    const emitter = this.socket.timeout(this.options.ackTimeoutMs) as unknown as { emitWithAck(name: string, payload: unknown): Promise<unknown> };
    emitter.emitWithAck('subscribe', { jobId, ...this.readAccessOf(jobId) }).catch(() => undefined);
  }

  detach(jobId: string, sink?: JobEventSink): void {
    const hub = this.sinks.get(jobId);
    if (!hub) return;
    if (sink) hub.members.delete(sink);
    else hub.members.clear();
    if (hub.members.size > 0) return;
    hub.order.close();
    this.sinks.delete(jobId);
    this.followedStates.delete(jobId);
    if (this.socket?.connected) this.socket.emit('unsubscribe', { jobId });
    this.release();
  }

  async jobAction(request: JobActionRequest): Promise<JobStatus> {
    this.pendingActions++;
    try {
      const raw = await this.request<unknown>('job:action', request);
      const status = parseStatusReply(raw);
      if (status) return status;
      const error = ErrorReplySchema.safeParse(raw);
      // `details` (ENOFUNDS: fundsRequired) is passed on when a scheduler sends it.
      throw error.success ? replyError(error.data, (raw as { details?: unknown }).details) : new CommuneError(ErrorCode.ESCHEDULER, 'malformed job:action reply');
    } finally {
      this.pendingActions--;
      this.release();
    }
  }

  async stateRequest(name: 'state:op' | 'state:get' | 'state:subscribe', payload: unknown): Promise<unknown> {
    if (name === 'state:subscribe') {
      const jobId = (payload as { jobId?: unknown } | null)?.jobId;
      if (typeof jobId === 'string') this.followedStates.add(jobId);
    }
    this.pendingActions++;
    try {
      // Reads carry the job's read token; operations are signed by the owner instead.
      const jobId = (payload as { jobId?: unknown } | null)?.jobId;
      const withAccess = name !== 'state:op' && typeof jobId === 'string' ? { ...(payload as object), ...this.readAccessOf(jobId) } : payload;
      return await this.request<unknown>(name, withAccess);
    } finally {
      this.pendingActions--;
      this.release();
    }
  }

  async getStatus(jobId: string, owner?: () => Promise<RequestSigner>): Promise<JobStatus> {
    return JobStatusSchema.parse(await this.readJob(jobId, `jobs/${encodeURIComponent(jobId)}`, owner));
  }

  async getResultsPage(jobId: string, after: number, limit: number): Promise<ResultsPage> {
    const query = new URLSearchParams({ after: String(after), limit: String(limit) });
    const page = ResultsPageSchema.safeParse(await this.readJob(jobId, `jobs/${encodeURIComponent(jobId)}/results?${query}`));
    if (!page.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed results page: ${page.error.message}`);
    return page.data;
  }

  /** A GET of one of the job's reads: with its read token, else signed by its owner, else bare (the scheduler answers EPERM). */
  private async readJob(jobId: string, relative: string, owner?: () => Promise<RequestSigner>): Promise<unknown> {
    const readToken = this.readTokens.get(jobId);
    if (readToken !== undefined) return this.rest('GET', relative, undefined, undefined, { [ReadTokenHeader]: readToken });
    return this.rest('GET', relative, owner ? await owner() : undefined);
  }

  /**
   * A REST request. With several URLs, a request no replica answered is tried on the next ones,
   * starting from the one in use: a GET after any network failure or timeout, other methods only
   * when the connection was refused (so nothing was sent). Each attempt is signed afresh.
   */
  async rest(method: 'GET' | 'DELETE' | 'POST', relative: string, signer?: RequestSigner, payload?: unknown, extraHeaders: Record<string, string> = {}): Promise<unknown> {
    const failures: string[] = [];
    const first = this.current;
    for (let attempt = 0; attempt < this.urls.length; attempt++) {
      const base = this.urls[(first + attempt) % this.urls.length];
      const url = new URL(relative, base);
      let response: Response;
      try {
        response = await this.fetchOnce(method, url, signer, payload, extraHeaders);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failures.push(`${method} ${url.href} failed: ${message}${causeCodeOf(error) ? ` (${causeCodeOf(error)})` : ''}`);
        if (method === 'GET' || causeCodeOf(error) === 'ECONNREFUSED') continue;
        break;
      }
      const body: unknown = await response.json().catch(() => undefined);
      if (!response.ok) {
        const reply = ErrorReplySchema.safeParse({ ok: false, ...(typeof body === 'object' && body !== null ? body : {}) });
        if (reply.success) throw replyError(reply.data);
        throw new CommuneError(response.status === 404 ? ErrorCode.ENOTFOUND : ErrorCode.ESCHEDULER, `${method} ${url.href} answered ${response.status}`);
      }
      return body;
    }
    throw new CommuneError(ErrorCode.ESCHEDULER, failures.join('; '));
  }

  private async fetchOnce(method: 'GET' | 'DELETE' | 'POST', url: URL, signer: RequestSigner | undefined, payload: unknown, extraHeaders: Record<string, string>): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...extraHeaders };
    if (signer) {
      // Signed over the path and query exactly as they go on the wire (protocol OwnerRequestSchema).
      const signed = OwnerRequestSchema.parse({
        method,
        path: url.pathname + url.search,
        owner: await signer.getAddress(),
        nonce: newId('n'),
        expiresAt: Date.now() + Limits.maxSignatureLifetimeMs / 2,
      });
      headers[OwnerRequestHeaders.owner] = signed.owner;
      headers[OwnerRequestHeaders.nonce] = signed.nonce;
      headers[OwnerRequestHeaders.expiresAt] = String(signed.expiresAt);
      headers[OwnerRequestHeaders.signature] = await signRequest(signer, SignedKind.ownerRequest, signed);
    }
    if (payload !== undefined) headers['content-type'] = 'application/json';
    return fetch(url, {
      method, signal: AbortSignal.timeout(this.options.requestTimeoutMs), headers, ...(payload !== undefined ? { body: JSON.stringify(payload) } : {}),
    });
  }
}

/**
 * socket.io-client keeps the acknowledgement timers of requests still buffered on a socket that
 * never connected, even after disconnect(); each would hold the program up to ackTimeoutMs.
 * Settles them (with an error) so their timers are cleared.
 */
function settleAcks(socket: ClientSocket, reason: string): void {
  const acks = (socket as unknown as { acks?: Record<string, ((...args: unknown[]) => void) & { withError?: boolean }> }).acks;
  if (!acks) return;
  for (const [id, ack] of Object.entries(acks)) {
    if (!ack.withError) continue;
    delete acks[id];
    ack(new Error(reason));
  }
}

/** The system error code under a failed fetch (undici puts it on `cause`). */
function causeCodeOf(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown; errors?: Array<{ code?: unknown }> } } | null)?.cause;
  const code = cause?.code ?? cause?.errors?.[0]?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Fans a job's events out to every handle following it on one connection, in the order of the job's event log. */
class SinkHub implements JobEventSink {
  /** Each sink, and whether it wants the job's results pushed. */
  readonly members = new Map<JobEventSink, boolean>();
  readonly order: JobEventOrder;
  /** follow() calls whose subscribe is on its way. */
  following = 0;

  constructor(makeOrder: (hub: SinkHub) => JobEventOrder) {
    this.order = makeOrder(this);
  }

  get wantsResults(): boolean {
    for (const wants of this.members.values()) if (wants) return true;
    return false;
  }

  #each(deliver: (sink: JobEventSink) => void): void {
    for (const sink of [...this.members.keys()]) deliver(sink);
  }

  onStatus(status: RunSnapshot): void {
    this.#each((sink) => sink.onStatus(status));
  }
  onResults(results: SliceResult[]): void {
    this.#each((sink) => sink.onResults(results));
  }
  onConsole(entries: ConsoleEntry[]): void {
    this.#each((sink) => sink.onConsole(entries));
  }
  onCustom(events: CustomEvent[]): void {
    this.#each((sink) => sink.onCustom(events));
  }
  onSliceError(sliceIndex: number, error: SliceError): void {
    this.#each((sink) => sink.onSliceError(sliceIndex, error));
  }
  onEnd(status: RunSnapshot): void {
    this.#each((sink) => sink.onEnd(status));
  }
  onStateChange(version: number, state: string): void {
    this.#each((sink) => sink.onStateChange?.(version, state));
  }
  onDisconnect(event: LinkEvent): void {
    this.#each((sink) => sink.onDisconnect?.(event));
  }
  onReconnect(event: LinkEvent): void {
    this.#each((sink) => sink.onReconnect?.(event));
  }
  onEventsMissed(): void {
    this.#each((sink) => sink.onEventsMissed?.());
  }
}

/** The schema each job event is parsed with, live or replayed (the same as JobEventEntrySchema's). */
const jobEventSchemas = {
  'job:accepted': JobAcceptedEventSchema,
  'job:status': JobStatusEventSchema,
  'job:results': JobResultsEventSchema,
  'job:console': JobConsoleEventSchema,
  'job:custom': JobCustomEventSchema,
  'job:slice-error': JobSliceErrorEventSchema,
  'job:end': JobEndEventSchema,
} as const;

/** What each job event does to a handle. */
const jobEventRoutes: { [N in JobEventEntry['name']]: (event: Extract<JobEventEntry, { name: N }>['event']) => HeldEvent } = {
  // The deploy's reply already said it; the event keeps its place in the log.
  'job:accepted': () => () => undefined,
  'job:status': (event) => (sink) => sink.onStatus(event),
  // Empty for a socket without the job's results: the event only keeps its place in the log.
  'job:results': (event) => (sink) => {
    if (event.results.length > 0) sink.onResults(event.results);
  },
  'job:console': (event) => (sink) => sink.onConsole(event.entries),
  'job:custom': (event) => (sink) => sink.onCustom(event.events),
  'job:slice-error': (event) => (sink) => sink.onSliceError(event.sliceIndex, event.error),
  'job:end': (event) => (sink) => sink.onEnd(event.status),
};

function routeJobEvent(entry: JobEventEntry): RoutedEvent {
  const deliver = (jobEventRoutes[entry.name] as (event: JobEventEntry['event']) => HeldEvent)(entry.event);
  return { jobId: entry.event.jobId, cursor: entry.event.cursor, deliver };
}

function toOrdered(event: RoutedEvent, hub: JobEventSink): OrderedEvent {
  return { cursor: event.cursor, deliver: () => event.deliver(hub) };
}

function parseStatusReply(raw: unknown): JobStatus | undefined {
  if (typeof raw !== 'object' || raw === null || (raw as { ok?: unknown }).ok !== true) return undefined;
  const status = JobStatusSchema.safeParse((raw as { status?: unknown }).status);
  return status.success ? status.data : undefined;
}

/** A scheduler's error reply as a CommuneError; codes the SDK does not know become ESCHEDULER. */
export function replyError(reply: { code: string; message: string }, details?: unknown): CommuneError {
  if (isKnownCode(reply.code)) return new CommuneError(reply.code, reply.message, details ?? undefined);
  return new CommuneError(ErrorCode.ESCHEDULER, `${reply.code}: ${reply.message}`, { code: reply.code });
}

export function isKnownCode(code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ErrorCode, code);
}
