import { Inject, Injectable, Logger } from '@nestjs/common';
import { CommuneError, ErrorCode, Limits, newId, sharesComputeGroup, type Task } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { Metrics } from '../health/metrics.js';
import { meetsRequirements } from './domain/requirements.js';
import { JobCatalog, type DispatchableJob } from './job-catalog.js';
import { LeaseJournalRepository } from './lease-journal.repository.js';
import { LeaseRepository } from './lease.repository.js';
import { StateService } from '../state/state.service.js';

/** What the scheduler remembers about one worker connection. */
export interface WorkerSession {
  /**
   * Lease owner: the same for every connection of one worker process (domain/lease-owner.ts), so a
   * worker that reconnects, to this replica or another, keeps its leases. Also how logs name it.
   */
  leaseOwner: string;
  /** Slices it held leased from earlier connections when this one was accepted (its cap makes room for them). */
  inheritedLeases: number;
  /** Where this worker's payments go; a worker without one only gets free jobs. */
  earnings: string | null;
  /** The least DCC per slice it works for. */
  minWage: string;
  /** Work functions already sent on this connection (sent once, then cached by hash). */
  sentWork: Set<string>;
  /** Module tables and module sources (job.requires()) already sent on this connection, by hash. */
  sentModules: Set<string>;
  /**
   * What the worker reported in its hello (spec "Requirements Objects"), bounded by its schema.
   * Declarations, not facts: used only to match job requirements, never to price work.
   */
  capabilities: Record<string, unknown>;
  /** Sandboxes it declared: bounds its lease cap and the slice time one task's results may claim. */
  sandboxes: number;
  /** Its results the scheduler accepted on this connection (its observed rate: the lease cap grows with it). */
  acceptedSlices: number;
  /** Paid slices whose reported time was an outlier against the job's peers (see PaymentsService). */
  paymentOutliers: number;
  /** Set after too many payment outliers: no more paid work, and its results are no longer paid. */
  unpaid: boolean;
  /** Whether it meets each job's requirements (they never change), bounded: the most recent jobs. */
  fits: Map<string, boolean>;
  /** Join keys of the compute groups it proved membership of at connection. */
  computeGroups: ReadonlySet<string>;
  /** Whether it runs jobs of the public group (jobs with no compute groups). */
  publicGroup: boolean;
}

/** What one task:request gets. */
export interface Grant {
  tasks: Task[];
  /**
   * The grant stopped because the worker had enough (or hit its cap), not because nothing was ready:
   * more work may wait for other workers (the gateway hints them, see WorkerNotifier.moreWorkReady).
   */
  moreReady: boolean;
}

/** Picks work for a worker and leases it as tasks. */
@Injectable()
export class DispatchService {
  private readonly logger = new Logger(DispatchService.name);
  /** Tasks granted per request, so one request can fill a worker from several small jobs. */
  static readonly maxTasksPerGrant = 4;
  /** Leases one grant may take, counting those it has to give back. */
  static readonly maxLeaseAttemptsPerGrant = 8;
  /** Jobs whose requirements check a session remembers. */
  static readonly maxRememberedFits = 64;

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly leases: LeaseRepository,
    private readonly catalog: JobCatalog,
    private readonly metrics: Metrics,
    private readonly journal: LeaseJournalRepository,
    private readonly state: StateService,
  ) {}

  /**
   * The most slices a worker connection may hold leased: proportional to its declared sandboxes
   * (Limits.maxLeasedSlicesPerSandbox each) and to its observed rate (it starts at
   * Limits.initialLeasedSlicesPerWorker and earns two more per accepted result). A worker back
   * from another replica starts with room for the slices it still holds from there, which it was
   * granted under its cap then.
   */
  static leaseCap(session: Pick<WorkerSession, 'sandboxes' | 'acceptedSlices'> & Partial<Pick<WorkerSession, 'inheritedLeases'>>): number {
    const earned = Limits.initialLeasedSlicesPerWorker + 2 * session.acceptedSlices + (session.inheritedLeases ?? 0);
    return Math.max(1, Math.min(session.sandboxes * Limits.maxLeasedSlicesPerSandbox, earned));
  }

  async grant(session: WorkerSession, maxSlices: number): Promise<Grant> {
    const tasks: Task[] = [];
    let nothingReady = false;
    // First-lease times for results.stat: written while the next lease is taken, awaited before the grant goes out.
    const journalWrites: Array<Promise<void>> = [];
    let wanted = maxSlices;
    // Leases given back (unknown job, requirements race) count too, so a grant always ends.
    let attempts = 0;
    while (wanted > 0 && tasks.length < DispatchService.maxTasksPerGrant && attempts++ < DispatchService.maxLeaseAttemptsPerGrant) {
      const taskId = newId('t');
      // Checked before leasing: the candidates the lease script looks at whose requirements this worker does not meet.
      // No candidate at all (an idle worker's poll): the lease script would find nothing either, so it is not run.
      // A worker at its lease cap then gets an empty grant, not ELEASECAP: there is nothing it could be refused.
      const { candidates, unfit: skip } = await this.unfitCandidates(session);
      if (candidates.length === 0) {
        nothingReady = true;
        break;
      }
      const leaseDeadline = Date.now() + this.env.LEASE_TIMEOUT_MS;
      const lease = await this.leases.lease(session.leaseOwner, taskId, Math.min(wanted, this.env.MAX_SLICES_PER_TASK), leaseDeadline, {
        minWageDcc: session.minWage,
        paidWork: session.earnings !== null && !session.unpaid,
      }, LeaseRepository.leaseCandidates, skip, DispatchService.leaseCap(session));
      if (!lease) {
        nothingReady = true;
        break;
      }
      if ('capped' in lease) {
        if (tasks.length > 0) break;
        this.metrics.leaseCapRefusals.inc();
        throw new CommuneError(
          ErrorCode.ELEASECAP,
          `this worker holds ${lease.capped} leased slices, its cap (${DispatchService.leaseCap(session)}: ${Limits.maxLeasedSlicesPerSandbox} per declared sandbox, ` +
            `${Limits.initialLeasedSlicesPerWorker} plus two per accepted result); send results or return slices first`,
        );
      }
      const job = await this.catalog.get(lease.jobId);
      if (!job) {
        this.logger.warn(`leased slices of unknown job ${lease.jobId}; returning them`);
        await this.leases.returnSlices(taskId, session.leaseOwner);
        continue;
      }
      if (!this.fits(session, job)) {
        // The job became a candidate after the check above (a race): put its slices back, try again.
        await this.leases.returnSlices(taskId, session.leaseOwner);
        continue;
      }
      journalWrites.push(
        this.journal.record(lease.jobId, lease.sliceIndexes).catch((error: unknown) => {
          this.logger.warn(`recording the lease of ${lease.sliceIndexes.length} slices of ${lease.jobId} failed: ${(error as Error).message}`);
        }),
      );
      const slices = lease.sliceIndexes.map((sliceIndex) => ({ sliceIndex, datum: job.input.sliceDatum(sliceIndex) }));
      const firstTime = !session.sentWork.has(job.workHash);
      if (firstTime) session.sentWork.add(job.workHash);
      // spec "Shared State": a sandbox starting the job's slices sees the state as it is now.
      const state = await this.state.forTask(job.id);
      tasks.push({
        taskId,
        jobId: job.id,
        workHash: job.workHash,
        ...(firstTime ? { work: job.work } : {}),
        arguments: job.arguments,
        public: job.public,
        slices,
        leaseDeadline,
        progressTimeoutMs: this.env.PROGRESS_TIMEOUT_MS,
        sliceTimeLimitMs: this.env.SLICE_TIME_LIMIT_MS,
        // A multi-range (compute.for form 3) datum is the argument tuple: work(i, j, ...arguments).
        spreadDatum: job.inputSet.kind === 'multi',
        ...this.modulesFor(session, job),
        ...(state ? { state } : {}),
      });
      this.metrics.slicesLeased.inc(slices.length);
      wanted -= slices.length;
    }
    await Promise.all(journalWrites);
    return { tasks, moreReady: tasks.length > 0 && !nothingReady };
  }

  /**
   * The task fields of a job with modules: the table's hash always, the table and each source only
   * the first time this connection needs them (the worker caches both by hash, as work sources).
   */
  private modulesFor(session: WorkerSession, job: DispatchableJob): Pick<Task, 'modulesHash' | 'modules' | 'moduleSources'> {
    const modules = job.modules;
    if (!modules) return {};
    const fields: Pick<Task, 'modulesHash' | 'modules' | 'moduleSources'> = { modulesHash: modules.tableHash };
    if (!session.sentModules.has(modules.tableHash)) {
      session.sentModules.add(modules.tableHash);
      fields.modules = modules.table;
    }
    const sources: NonNullable<Task['moduleSources']> = [];
    for (const [hash, source] of modules.sources) {
      if (session.sentModules.has(hash)) continue;
      session.sentModules.add(hash);
      sources.push({ hash, source });
    }
    if (sources.length > 0) {
      fields.moduleSources = sources;
      this.metrics.moduleSourcesSent.inc(sources.length);
    }
    return fields;
  }

  /** The ready jobs the next lease may look at (at most leaseCandidates ids), and those of them this worker cannot run. */
  private async unfitCandidates(session: WorkerSession): Promise<{ candidates: string[]; unfit: string[] }> {
    const candidates = await this.leases.readyCandidates();
    const jobs = await Promise.all(candidates.map((jobId) => (session.fits.has(jobId) ? null : this.catalog.get(jobId).catch(() => null))));
    const unfit: string[] = [];
    candidates.forEach((jobId, i) => {
      const known = session.fits.get(jobId);
      const job = jobs[i];
      const fits = known ?? (job ? this.fits(session, job) : true);
      if (!fits) unfit.push(jobId);
    });
    return { candidates, unfit };
  }

  /** Whether the session's worker meets the job's requirements, remembered per session (bounded). */
  private fits(session: WorkerSession, job: DispatchableJob): boolean {
    const known = session.fits.get(job.id);
    if (known !== undefined) return known;
    const fits = sharesComputeGroup(job.computeGroups, session.computeGroups, session.publicGroup) && meetsRequirements(job.requirements, session.capabilities);
    session.fits.set(job.id, fits);
    if (session.fits.size > DispatchService.maxRememberedFits) {
      const oldest = session.fits.keys().next().value;
      if (oldest !== undefined) session.fits.delete(oldest);
    }
    return fits;
  }
}
