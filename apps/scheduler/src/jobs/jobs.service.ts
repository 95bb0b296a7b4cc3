import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  CommuneError, deploySigningPayload, ErrorCode, hashOf, inputValuesDigest, inputValuesText, JobActionSchema, Limits, newId, SignedKind, type DeployRequest, type JobAction,
  type JobInfo, type JobStatus, type RunStatus, type SliceResult,
} from '@commune/protocol';
import { newReadToken, ReadAccess } from '../auth/read-access.js';
import { SignedRequests } from '../auth/signed-requests.js';
import { ComputeGroupsService } from '../compute-groups/compute-groups.service.js';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { LeaseRepository } from '../dispatch/lease.repository.js';
import { WorkerNotifier } from '../dispatch/worker-notifier.js';
import { MaintenanceQueue } from '../dispatch/maintenance.queue.js';
import { Metrics } from '../health/metrics.js';
import { meanInputBytes } from './domain/input-profile.js';
import { checkJobSpec } from './domain/job-limits.js';
import { JobEvents } from './job-events.js';
import { JobsRepository, type StoredArrayInput } from './jobs.repository.js';
import { PaymentsService } from '../payments/payments.service.js';
import { AppliancesService } from '../appliances/appliances.service.js';
import { StateService } from '../state/state.service.js';

/** Job intake and a job's life: deploy, status, cancel, end. */
@Injectable()
export class JobsService {
  static readonly noFittingWorker = 'no connected worker meets the job requirements and shares its compute groups';
  private readonly logger = new Logger(JobsService.name);
  private readonly lastStatusAt = new Map<string, number>();

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly jobs: JobsRepository,
    private readonly leases: LeaseRepository,
    private readonly events: JobEvents,
    private readonly workers: WorkerNotifier,
    private readonly maintenance: MaintenanceQueue,
    private readonly metrics: Metrics,
    private readonly payments: PaymentsService,
    private readonly appliances: AppliancesService,
    private readonly computeGroups: ComputeGroupsService,
    private readonly state: StateService,
    private readonly signed: SignedRequests,
    private readonly readAccess: ReadAccess,
  ) {}

  /** Verifies, checks limits, stores and opens a job for dispatch; the reply carries the job's first read token. */
  async deploy(request: DeployRequest, onStored: (jobId: string) => void = () => {}): Promise<{ jobId: string; total: number; receipt: string; readToken: string }> {
    const { job: spec, signature } = request;
    // An array input set is signed as its digest: hashed here once (native sha256 of its canonical
    // JSON), and that text is what is measured and stored. Verifying costs a hash, not the body.
    const arrayInput = spec.inputSet.kind === 'array' ? storedInputOf(spec.inputSet.values) : null;
    // Single-use through the (owner, nonce) row below: a resent deploy gets its first answer.
    await this.signed.verify({ kind: SignedKind.deploy, payload: deploySigningPayload(spec, arrayInput?.sha256), signature, signer: spec.owner, expiresAt: spec.expiresAt });
    const inputSet = checkJobSpec(spec, {
      maxWorkBytes: this.env.MAX_WORK_BYTES,
      maxInputSetBytes: this.env.MAX_INPUT_SET_BYTES,
      maxSlicesPerJob: this.env.MAX_SLICES_PER_JOB,
      maxSignatureLifetimeMs: Limits.maxSignatureLifetimeMs,
      bankEnabled: this.payments.bankEnabled,
    }, Date.now(), arrayInput?.bytes);
    const jobId = newId('j');
    const total = inputSet.sliceCount;
    // appliance.for / appliance.do: the signed work must be the named function's published source.
    const appliance = spec.appliance ? await this.appliances.jobOrigin(spec.appliance, spec.work) : null;
    // Compute groups: every credential must hold (ENOTFOUND / EPERM), or the job is not deployed at all.
    const computeGroups = await this.computeGroups.join(spec.computeGroups ?? []);
    const readToken = newReadToken();
    const stored = await this.jobs.create(jobId, spec, hashOf(spec.work), total, signature, meanInputBytes(inputSet), appliance, computeGroups, readToken.hash, arrayInput);
    if (!stored) {
      // A resent deploy (the client lost our ack) gets the first answer; another job reusing the
      // nonce is a replay.
      const first = await this.jobs.findByNonce(spec.owner, spec.nonce);
      if (!first || first.signature !== signature) throw new CommuneError(ErrorCode.EREPLAY, 'this nonce was already used by another deploy of this owner');
      // Only the token's hash was kept: the resent deploy (signed by the owner, unexpired) gets a new one.
      const again = await this.readAccess.issue(first.id);
      onStored(first.id);
      return { jobId: first.id, total: first.total, receipt: hashOf({ jobId: first.id, signature }), readToken: again };
    }
    // spec "Shared State": job.state as it was at exec(); stored before any worker can see the job.
    await this.state.initialize(jobId, spec.state);
    onStored(jobId); // the deploying socket joins the job's room before any event can exist
    const escrow = total > 0 ? await this.payments.escrowOnDeploy(jobId, spec.owner, spec.slicePaymentOffer, total) : ({ kind: 'free' } as const);
    await this.leases.openJob(jobId, total, escrow.kind === 'free' ? null : {
      offerDcc: spec.slicePaymentOffer,
      escrowedSlices: escrow.kind === 'escrowed' ? escrow.escrowedSlices : 0,
      paused: escrow.kind === 'nofunds',
    });
    this.metrics.jobsDeployed.inc();
    this.logger.log(`job ${jobId} deployed by ${spec.owner}: ${total} slices${escrow.kind === 'nofunds' ? `; paused: ${escrow.message}` : ''}`);
    if (escrow.kind === 'nofunds') {
      // After the deploy reply and `accepted`: the owner learns the job waits for funds (ENOFUNDS).
      setImmediate(() => void this.announce(jobId));
    } else if (total === 0) {
      const status = await this.jobs.end(jobId, 'finished', null);
      if (status) queueMicrotask(() => this.events.end(status));
    } else {
      this.workers.workAvailable();
    }
    return { jobId, total, receipt: hashOf({ jobId, signature }), readToken: readToken.token };
  }

  async status(jobId: string): Promise<JobStatus> {
    const [distributed, unmet] = await Promise.all([this.leases.distributed(jobId), this.leases.unmet(jobId)]);
    const status = await this.jobs.status(jobId, distributed);
    if (!status) throw new CommuneError(ErrorCode.ENOTFOUND, `no job ${jobId}`);
    // Cheap: a Redis flag set when a worker asking for work skipped the job and cleared when it is leased (see leaseScript).
    if (status.runStatus === 'running') status.waitingFor = unmet ? JobsService.noFittingWorker : null;
    return status;
  }

  /** Runs a signed action (cancel, pause, resume) after checking signer, expiry and nonce. */
  async act(request: JobAction, signature: string): Promise<JobStatus> {
    const action = JobActionSchema.parse(request);
    const signer = await this.signed.verify({ kind: SignedKind.jobAction, payload: request, signature, expiresAt: action.expiresAt, nonce: action.nonce });
    const status = await this.status(action.jobId);
    if (signer !== status.owner) throw new CommuneError(ErrorCode.EPERM, `only the job owner may ${action.action} it`);
    if (action.action === 'pause') return this.pause(status);
    if (action.action === 'resume') return this.resume(status);
    if (action.action === 'escrow') return this.escrow(status, action.amount, action.nonce);
    if (status.runStatus !== 'running' && status.runStatus !== 'paused') return status;
    return (await this.endJob(action.jobId, 'cancelled', { code: ErrorCode.ECANCELLED, message: 'cancelled by its owner' })) ?? (await this.status(action.jobId));
  }

  /** Stops handing out the job's slices; slices already out still report. A paused job stays paused. */
  private async pause(status: JobStatus): Promise<JobStatus> {
    if (status.runStatus === 'paused') return status;
    if (status.runStatus !== 'running') throw new CommuneError(ErrorCode.EJOBSTATE, `job ${status.jobId} has ended (${status.runStatus}); it cannot be paused`);
    const paused = await this.jobs.changeRunStatus(status.jobId, 'running', 'paused');
    if (!paused) return this.status(status.jobId); // it ended meanwhile
    await this.leases.setRunning(status.jobId, 'paused');
    const current = await this.status(status.jobId);
    this.events.status(current);
    this.logger.log(`job ${status.jobId} paused`);
    return current;
  }

  /** spec job.resume(): the scheduler hands out the job's slices again. A running job is left as it is. */
  private async resume(status: JobStatus): Promise<JobStatus> {
    if (status.runStatus === 'running') return status;
    if (status.runStatus !== 'paused') throw new CommuneError(ErrorCode.EJOBSTATE, `job ${status.jobId} has ended (${status.runStatus}); it cannot be resumed`);
    if (status.failure?.code === ErrorCode.ENOFUNDS) {
      // Paused for funds: escrow again first; still not covered -> ENOFUNDS, the job stays paused.
      const job = await this.payments.paidJob(status.jobId);
      const escrow = job ? await this.payments.escrowNext(job) : null;
      if (escrow?.kind === 'nofunds') throw new CommuneError(ErrorCode.ENOFUNDS, escrow.message, { fundsRequired: escrow.fundsRequired });
    }
    const resumed = await this.jobs.changeRunStatus(status.jobId, 'paused', 'running');
    if (!resumed) return this.status(status.jobId);
    if (!(await this.leases.setRunning(status.jobId, 'running'))) {
      // Redis lost the job while it was paused: every slice without a result is found again by the reconciler.
      await this.leases.openJob(status.jobId, status.total);
      await this.leases.markExhausted(status.jobId);
    }
    this.workers.workAvailable();
    const current = await this.status(status.jobId);
    this.events.status(current);
    this.logger.log(`job ${status.jobId} resumed`);
    return current;
  }

  /** spec job.escrow(amount): adds to a paid job's hold (ENOFUNDS when the account cannot cover it). */
  private async escrow(status: JobStatus, amountUnits: string | undefined, nonce: string): Promise<JobStatus> {
    if (!amountUnits || amountUnits === '0') throw new CommuneError(ErrorCode.EINVAL, 'escrow needs a positive amount (smallest unit)');
    if (status.runStatus !== 'running' && status.runStatus !== 'paused') throw new CommuneError(ErrorCode.EJOBSTATE, `job ${status.jobId} has ended (${status.runStatus})`);
    const job = await this.payments.paidJob(status.jobId);
    if (!job || job.offerUnits === '0') throw new CommuneError(ErrorCode.EJOBSTATE, `job ${status.jobId} is free: there is nothing to escrow`);
    const escrow = await this.payments.escrowAmount(job, amountUnits, nonce);
    if (escrow.kind === 'nofunds') throw new CommuneError(ErrorCode.ENOFUNDS, escrow.message, { fundsRequired: escrow.fundsRequired });
    return this.status(status.jobId);
  }

  /** Sends the job's current status to its owner (after a change made outside a request). */
  async announce(jobId: string): Promise<void> {
    const status = await this.jobs.status(jobId, await this.leases.distributed(jobId)).catch(() => null);
    if (status) this.events.status(status);
  }

  // ---------------------------------------------------------------- owner queries (signed REST)

  /** spec compute.status form 2: the owner's jobs created within [from, to], newest first. */
  async listByOwner(signer: string, owner: string, from: number | undefined, to: number | undefined, limit: number): Promise<JobStatus[]> {
    if (signer !== owner) throw new CommuneError(ErrorCode.EPERM, "only the payment account itself may list its jobs");
    const jobs = await this.jobs.listByOwner(owner, from === undefined ? null : new Date(from), to === undefined ? null : new Date(to), limit);
    const distributed = await Promise.all(jobs.map((job) => (job.runStatus === 'running' || job.runStatus === 'paused' ? this.leases.distributed(job.jobId) : null)));
    return jobs.map((job, i) => ({ ...job, distributed: Math.min(job.total, Math.max(distributed[i] ?? 0, job.computed)) }));
  }

  /** The job's status, after checking that `signer` owns it (EPERM otherwise). */
  async ownedStatus(signer: string, jobId: string, what: string): Promise<JobStatus> {
    const status = await this.status(jobId);
    if (status.owner !== signer) throw new CommuneError(ErrorCode.EPERM, `only the job owner may ${what}`);
    return status;
  }

  /** spec compute.getJobInfo: what was deployed and how it is going. */
  async info(signer: string, jobId: string): Promise<JobInfo> {
    const status = await this.ownedStatus(signer, jobId, 'read its deployment');
    const deployed = await this.jobs.deployed(jobId);
    if (!deployed) throw new CommuneError(ErrorCode.ENOTFOUND, `no job ${jobId}`);
    const { signature, ...spec } = deployed;
    return { jobId, status, ...spec, receipt: hashOf({ jobId, signature }) };
  }

  /** Ends a running job once (any replica may try; one wins) and tells clients and workers. */
  async endJob(jobId: string, status: Exclude<RunStatus, 'running'>, failure: { code: string; message: string } | null): Promise<JobStatus | null> {
    const ended = await this.jobs.end(jobId, status, failure);
    await this.leases.closeJob(jobId, status);
    if (!ended) return null;
    await this.maintenance.forgetJobLater(jobId);
    this.lastStatusAt.delete(jobId);
    if (status !== 'finished') this.workers.jobStopped(jobId);
    this.events.status(ended);
    this.events.end(ended);
    this.logger.log(`job ${jobId} ${status}${failure ? ` (${failure.code}: ${failure.message})` : ''}`);
    return ended;
  }

  /** Status events, at most every STATUS_EVENT_INTERVAL_MS per job on this replica. */
  async publishProgress(jobId: string, computed: number, total: number): Promise<void> {
    const now = Date.now();
    const last = this.lastStatusAt.get(jobId) ?? 0;
    if (now - last < this.env.STATUS_EVENT_INTERVAL_MS && computed < total) return;
    this.lastStatusAt.set(jobId, now);
    const status = await this.jobs.status(jobId, await this.leases.distributed(jobId));
    if (status) this.events.status(status);
  }

  async resultsPage(jobId: string, after: number, limit: number): Promise<{ results: SliceResult[]; nextAfter: number | null }> {
    await this.status(jobId);
    const rows = await this.jobs.resultsPage(jobId, after, limit);
    const results = rows.map((row) => ({ sliceIndex: row.sliceIndex, value: row.value === null ? undefined : JSON.parse(row.value) }));
    const nextAfter = rows.length === limit ? rows[rows.length - 1]!.sliceIndex : null;
    return { results, nextAfter };
  }
}

function storedInputOf(values: readonly unknown[]): StoredArrayInput {
  const text = inputValuesText(values);
  return { text, sha256: inputValuesDigest(text), bytes: Buffer.byteLength(text), count: values.length };
}
