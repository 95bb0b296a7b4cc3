import {
  decodeState, ErrorCode, StateChangeEventSchema, StateOperationReplySchema, StateSnapshotReplySchema,
  type StateOperation, type StateOperationReply,
} from '@commune/protocol';
import type { SandboxPool } from '@commune/sandbox';
import type { Logger } from './log.js';
import type { WorkerSocket } from './supervisor.js';

/** Jobs remembered as listened to (a sandbox added a `change` listener to their worker.state). */
const maxListeningJobs = 1024;

/**
 * The worker's side of shared state (spec "Synchronization"): forwards worker.state operations
 * from the sandboxes to the scheduler, follows the `state:change` of jobs whose sandboxes listen
 * (only while this worker holds tasks of them), and hands changes to the pool.
 */
export class WorkerStateLink {
  /** Operations not yet answered, per job: a slice's results go out only after its operations were answered. */
  private readonly pending = new Map<string, Set<Promise<unknown>>>();
  private readonly listening = new Set<string>();
  private readonly subscribed = new Set<string>();

  /** `socket()` is the worker's socket in use (it changes when the worker moves to another scheduler URL). */
  constructor(
    private readonly socket: () => WorkerSocket,
    private readonly pool: Partial<Pick<SandboxPool, 'updateState'>>,
    private readonly log: Logger,
    private readonly ackTimeoutMs: number,
  ) {}

  /** Takes `state:change` from `socket` while `inUse()` says it is the socket in use. */
  listenTo(socket: WorkerSocket, inUse: () => boolean): void {
    socket.on('state:change', (raw: unknown) => {
      if (!inUse()) return;
      const parsed = StateChangeEventSchema.safeParse(raw);
      if (!parsed.success) {
        this.log.warn('ignored a malformed state:change', { event: 'invalid_message', message: 'state:change' });
        return;
      }
      this.pool.updateState?.(parsed.data.jobId, parsed.data.version, decodeState(parsed.data.state));
    });
  }

  /** A new connection: nothing is subscribed on it yet. */
  connected(): void {
    this.subscribed.clear();
  }

  operate(jobId: string, operation: StateOperation): Promise<StateOperationReply> {
    const sent = this.socket()
      .timeout(this.ackTimeoutMs)
      .emitWithAck('state:op', { jobId, operation })
      .then(
        (raw: unknown): StateOperationReply => {
          const reply = StateOperationReplySchema.safeParse(raw);
          return reply.success ? reply.data : { ok: false, code: ErrorCode.ESCHEDULER, message: 'the scheduler answered a state operation with a malformed reply' };
        },
        (error: unknown): StateOperationReply => ({ ok: false, code: ErrorCode.ESCHEDULER, message: `the state operation was not answered: ${(error as Error)?.message ?? String(error)}` }),
      );
    let set = this.pending.get(jobId);
    if (!set) this.pending.set(jobId, (set = new Set()));
    const entry = sent.finally(() => {
      set.delete(entry);
      if (set.size === 0 && this.pending.get(jobId) === set) this.pending.delete(jobId);
    });
    set.add(entry);
    return sent;
  }

  /** Resolves once every operation of the job sent so far was answered. */
  settled(jobId: string): Promise<void> | null {
    const set = this.pending.get(jobId);
    return set && set.size > 0 ? Promise.allSettled([...set]).then(() => undefined) : null;
  }

  /** A sandbox listens for the job's changes: follow them while this worker holds its tasks. */
  listen(jobId: string): void {
    this.listening.add(jobId);
    if (this.listening.size > maxListeningJobs) this.listening.delete(this.listening.values().next().value as string);
    this.follow(jobId);
  }

  /** A task of the job started. */
  follow(jobId: string): void {
    const socket = this.socket();
    if (!this.listening.has(jobId) || this.subscribed.has(jobId) || !socket.connected) return;
    this.subscribed.add(jobId);
    socket
      .timeout(this.ackTimeoutMs)
      .emitWithAck('state:subscribe', { jobId })
      .then((raw: unknown) => {
        const reply = StateSnapshotReplySchema.safeParse(raw);
        if (reply.success && reply.data.ok) this.pool.updateState?.(jobId, reply.data.version, decodeState(reply.data.state));
        else this.subscribed.delete(jobId);
      }, () => this.subscribed.delete(jobId));
  }

  /** No task of the job is left here: stop hearing its changes. */
  idle(jobId: string): void {
    if (!this.subscribed.delete(jobId)) return;
    const socket = this.socket();
    if (socket.connected) socket.emit('state:unsubscribe', { jobId });
  }
}
