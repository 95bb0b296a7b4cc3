import { Injectable, Logger } from '@nestjs/common';
import {
  ClientStateOperationSchema, CommuneError, encodeState, ErrorCode, SignedKind,
  type ClientStateOperation, type StateOperation, type StateOperationReply, type StateSnapshot,
} from '@commune/protocol';
import { SignedRequests } from '../auth/signed-requests.js';
import { StateEvents } from './state-events.js';
import { StateRepository, type StateChange } from './state.repository.js';

type OkReply = Extract<StateOperationReply, { ok: true }>;

/**
 * spec "Shared State" / "Synchronization": the scheduler is the arbiter of each job's state.
 * Every operation is atomic across replicas (one Redis script), stored in Postgres before it is
 * acknowledged, and pushed to the clients and workers listening for the job's changes.
 */
@Injectable()
export class StateService {
  private readonly logger = new Logger(StateService.name);

  constructor(private readonly repository: StateRepository, private readonly events: StateEvents, private readonly signed: SignedRequests) {}

  /** The state the job was deployed with (state text; absent: {}). */
  async initialize(jobId: string, text: string | undefined): Promise<void> {
    // Most jobs have no state: no Postgres row at deploy (a missing row reads as {} at version 0),
    // only the Redis copy every task reads.
    if (text === undefined || text === '{}') return this.repository.seedEmpty(jobId);
    await this.repository.initialize(jobId, text);
  }

  async snapshot(jobId: string): Promise<StateSnapshot> {
    const { version, state } = await this.repository.read(jobId);
    return { version, state: encodeState(state) };
  }

  /** What a task carries as worker.state: undefined for a job whose state is still the empty initial one. */
  async forTask(jobId: string): Promise<StateSnapshot | undefined> {
    const { version, state } = await this.repository.read(jobId);
    if (version === 0 && Object.keys(state).length === 0) return undefined;
    return { version, state: encodeState(state) };
  }

  /** worker.state.set / testAndSet / increment from a worker connection holding a task of the job. */
  async fromWorker(jobId: string, operation: StateOperation, leaseOwner: string): Promise<OkReply> {
    return this.apply(jobId, operation, leaseOwner);
  }

  /** job.state.set / testAndSet / increment from the client, signed by the job's owner. */
  async fromOwner(request: ClientStateOperation, signature: string): Promise<OkReply> {
    const parsed = ClientStateOperationSchema.parse(request);
    const signer = await this.signed.verify({ kind: SignedKind.stateOperation, payload: request, signature, expiresAt: parsed.expiresAt, nonce: parsed.nonce });
    const owner = await this.repository.owner(parsed.jobId);
    if (owner === null) throw new CommuneError(ErrorCode.ENOTFOUND, `no job ${parsed.jobId}`);
    if (signer !== owner) throw new CommuneError(ErrorCode.EPERM, "only the job's owner may change its state");
    return this.apply(parsed.jobId, parsed.operation, null);
  }

  /** A worker connection may follow a job's changes while it holds a task of it. */
  async mayFollow(leaseOwner: string, jobId: string): Promise<boolean> {
    return this.repository.holdsTask(leaseOwner, jobId);
  }

  private async apply(jobId: string, operation: StateOperation, leaseOwner: string | null): Promise<OkReply> {
    const change: StateChange = await this.repository.operate(jobId, operation, leaseOwner);
    const state = encodeState(change.state);
    if (change.replaced) {
      // Stored before it is acknowledged: an answered change survives losing Redis.
      await this.repository.persist(jobId, change.version, change.state);
      this.events.changed({ jobId, version: change.version, state });
    }
    const reply: OkReply = { ok: true, replaced: change.replaced, version: change.version, state };
    if (operation.kind === 'set' && operation.test && change.previous) reply.previous = encodeState(change.previous);
    this.logger.debug?.(`job ${jobId}: state ${operation.kind} ${change.replaced ? `-> version ${change.version}` : '(no change)'}`);
    return reply;
  }
}
