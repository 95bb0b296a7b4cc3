import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Server, Socket } from 'socket.io';
import { Namespaces } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { disconnectsDue } from './domain/drain-pacing.js';
import { Metrics } from './metrics.js';

/**
 * Where a replica is in its life. `serving` takes everything; `draining` (after SIGTERM or
 * SIGINT) answers /health with 503, refuses new workers, grants no leases, and disconnects its
 * workers and clients a few at a time; `closing` is the Nest shutdown that follows. Outside
 * `serving`, a worker that goes away keeps its leased slices (it reconnects to another replica
 * and its results are taken there; if it never does, the leases expire and the sweep puts its
 * slices back).
 */
export type ReplicaPhase =
  | { name: 'serving' }
  | { name: 'draining'; since: number; deadline: number }
  | { name: 'closing' };

/** What a drain did, for the log and for tests. */
export interface DrainReport {
  workersDisconnected: number;
  clientsDisconnected: number;
  /** Answers to workers still being worked out when the drain ended (0 unless SHUTDOWN_DRAIN_MS ran out). */
  unfinishedAnswers: number;
  /** The drain was cut short by a second signal. */
  cutShort: boolean;
  tookMs: number;
}

/** The replica's lifecycle: one phase, changed only here (serving -> draining -> closing). */
@Injectable()
export class ReplicaLifecycle {
  /** How often the drain disconnects its next sockets and looks at what is left. */
  static readonly drainTickMs = 50;
  private readonly logger = new Logger(ReplicaLifecycle.name);
  private current: ReplicaPhase = { name: 'serving' };
  private server: Server | null = null;
  /** Worker messages being answered (results being stored): the drain waits for them. */
  private inFlight = 0;
  /** The same, per socket: a socket is disconnected between its answers, so no acknowledgement is lost with it. */
  private readonly inFlightBySocket = new WeakMap<object, number>();
  private drained: Promise<DrainReport> | null = null;
  private wake: (() => void) | null = null;
  private cut = false;

  constructor(@Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv, private readonly metrics: Metrics) {}

  get phase(): ReplicaPhase {
    return this.current;
  }

  get serving(): boolean {
    return this.current.name === 'serving';
  }

  /** The socket.io server whose /worker and /client sockets a drain disconnects. */
  attach(server: Server): void {
    this.server = server;
  }

  /**
   * Runs the answer to a message of `socket`, counted so that a drain lets it finish before the
   * replica closes, and disconnects the socket only once its answer went out (a worker whose
   * results were stored but not acknowledged would send them again to the next replica).
   */
  async track<T>(socket: object, work: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.inFlightBySocket.set(socket, (this.inFlightBySocket.get(socket) ?? 0) + 1);
    try {
      return await work();
    } finally {
      this.inFlight--;
      this.inFlightBySocket.set(socket, (this.inFlightBySocket.get(socket) ?? 1) - 1);
      if (this.inFlight === 0) this.wake?.();
    }
  }

  /**
   * Drains the replica, at most SHUTDOWN_DRAIN_MS: /health says `draining` for
   * SHUTDOWN_NOT_READY_MS (load balancers and Kubernetes stop sending new connections), then the
   * workers and clients connected here are disconnected, paced over half of what is left (workers
   * first: their results matter most), then answers still in flight get the rest of the time.
   * Workers and clients reconnect to the other replicas by themselves. Called again, returns the
   * same drain.
   */
  drain(): Promise<DrainReport> {
    this.drained ??= this.run();
    return this.drained;
  }

  /** A second signal: what is left of the drain is skipped. */
  cutShort(): void {
    this.cut = true;
    this.wake?.();
  }

  /** The Nest shutdown begins: whatever disconnects now is part of the replica stopping. */
  closing(): void {
    this.current = { name: 'closing' };
  }

  private async run(): Promise<DrainReport> {
    const since = Date.now();
    const deadline = since + this.env.SHUTDOWN_DRAIN_MS;
    this.current = { name: 'draining', since, deadline };
    this.metrics.draining.set(1);
    const notReadyUntil = since + this.env.SHUTDOWN_NOT_READY_MS;
    const windowEnd = notReadyUntil + (deadline - notReadyUntil) / 2;
    this.logger.log(
      `draining: not ready for ${this.env.SHUTDOWN_NOT_READY_MS} ms, then ${this.sockets(Namespaces.worker).length} workers and ` +
        `${this.sockets(Namespaces.client).length} clients disconnected within ${Math.round(windowEnd - notReadyUntil)} ms; closing within ${this.env.SHUTDOWN_DRAIN_MS} ms`,
    );
    await this.sleepUntil(notReadyUntil);
    let workersDisconnected = 0;
    let clientsDisconnected = 0;
    while (!this.cut && Date.now() < deadline) {
      const workers = this.sockets(Namespaces.worker);
      const clients = this.sockets(Namespaces.client);
      if (workers.length + clients.length === 0 && this.inFlight === 0) break;
      const due = disconnectsDue(workers.length + clients.length, Date.now(), windowEnd, ReplicaLifecycle.drainTickMs);
      // Sockets between answers first; one still being answered waits for a later tick (until the window ends).
      const idle = (socket: Socket) => (this.inFlightBySocket.get(socket) ?? 0) === 0;
      const order = [...workers.filter(idle), ...clients, ...(Date.now() >= windowEnd ? workers.filter((socket) => !idle(socket)) : [])];
      for (const socket of order.slice(0, due)) {
        if (socket.nsp.name === Namespaces.worker) workersDisconnected++;
        else clientsDisconnected++;
        socket.disconnect(true);
      }
      await this.sleepUntil(Math.min(deadline, Date.now() + ReplicaLifecycle.drainTickMs), workers.length + clients.length === due);
    }
    this.metrics.drainDisconnects.inc({ namespace: 'worker' }, workersDisconnected);
    this.metrics.drainDisconnects.inc({ namespace: 'client' }, clientsDisconnected);
    const report: DrainReport = { workersDisconnected, clientsDisconnected, unfinishedAnswers: this.inFlight, cutShort: this.cut, tookMs: Date.now() - since };
    const text = `drained in ${report.tookMs} ms: ${workersDisconnected} workers and ${clientsDisconnected} clients handed to the other replicas`;
    if (report.unfinishedAnswers > 0 || report.cutShort) {
      this.logger.warn(`${text}; ${report.unfinishedAnswers} worker answers unfinished${report.cutShort ? ' (cut short by a second signal)' : ''}`);
    } else {
      this.logger.log(text);
    }
    return report;
  }

  /** Sockets connected to this replica in a namespace (never those of other replicas). */
  private sockets(namespace: string): Socket[] {
    if (!this.server) return [];
    return [...this.server.of(namespace).sockets.values()];
  }

  /** Waits until `until`, or less: a second signal, or (when `early`) the last answer in flight finishing. */
  private sleepUntil(until: number, early = false): Promise<void> {
    const ms = until - Date.now();
    if (ms <= 0 || this.cut) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = () => {
        if (this.cut || (early && this.inFlight === 0)) done();
      };
    });
  }
}
