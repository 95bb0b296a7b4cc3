import { randomUUID } from 'node:crypto';
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnModuleDestroy } from '@nestjs/common';
import { checkBounds, ErrorCode, Limits, type SliceOutcome, type TaskResults, type TaskResultsAck, type ValueBounds } from '@commune/protocol';
import { unavailableDependency } from '@commune/service';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { LeaseRepository } from '../dispatch/lease.repository.js';
import { WorkerNotifier } from '../dispatch/worker-notifier.js';
import { JobEvents } from '../jobs/job-events.js';
import { JobsRepository } from '../jobs/jobs.repository.js';
import { JobsService } from '../jobs/jobs.service.js';
import { Metrics } from '../health/metrics.js';
import { PaymentsService } from '../payments/payments.service.js';
import { RedisConnections } from '../redis/redis.module.js';
import { ClaimJournal } from './claim-journal.js';

/** Who sends a batch of results: its lease owner (one per connection), where its pay goes, and the sandboxes it declared. */
export interface ResultsSubmitter {
  leaseOwner: string;
  /** The worker's earnings account, paid for each accepted slice of a paid job; null: unpaid. */
  payee: string | null;
  sandboxes: number;
}

/** What a batch came to: the worker's ack, and how many paid slices were timing outliers against the job's peers. */
export interface SubmitOutcome extends TaskResultsAck {
  paymentOutliers: number;
}

type OkOutcome = Extract<SliceOutcome, { status: 'ok' }>;
type ErrorOutcome = Extract<SliceOutcome, { status: 'error' }>;

/** One result value's bounds: nesting (ETOODEEP) and size (ERESULTTOOBIG), checked without recursion. */
const resultBounds: ValueBounds = { maxDepth: Limits.maxValueDepth, maxNodes: Limits.maxValueNodes, maxStringChars: Limits.maxResultBytes };

/**
 * Accepts a worker's results: a slice's result counts only if the slice is leased to that worker
 * (claimed atomically in Redis) and is the first for the slice (primary key in Postgres). A result
 * nested deeper than Limits.maxValueDepth (ETOODEEP) or larger than Limits.maxResultBytes
 * (ERESULTTOOBIG) is a failed attempt of its slice, so a poison slice ends its job after
 * maxAttemptsPerSlice instead of being leased forever.
 *
 * Every claim is journaled (ClaimJournal) until its batch is settled. When storing fails because
 * PostgreSQL is down, the claimed slices go back to the worker's lease (for resendWindowMs) and
 * the worker is answered EUNAVAILABLE, so it sends the same results again rather than computing
 * them again; those it does not send again go back on the queue when the window closes.
 * When the scheduler dies between claim and insert, the journal's sweep (every replica, every
 * LEASE_SWEEP_INTERVAL_MS) puts the slices back on the queue claimDeadlineMs after the claim.
 */
@Injectable()
export class ResultsService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(ResultsService.name);
  /** A claim not settled within this time is taken for lost (its scheduler died) and swept back to its job's queue. */
  static readonly claimDeadlineMs = 10_000;
  /**
   * How long results that could not be stored stay leased to their worker for it to send them
   * again (it resends for ~3-5 s, see the worker's resendLater); then those not sent again go back on the queue.
   */
  static readonly resendWindowMs = 6_000;
  private readonly claims: ClaimJournal;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  /** Batches that could not be stored because a dependency was down, and when that was last logged. */
  private unavailable = { count: 0, loggedAt: 0 };

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly leases: LeaseRepository,
    private readonly jobsRepository: JobsRepository,
    private readonly jobs: JobsService,
    private readonly events: JobEvents,
    private readonly workers: WorkerNotifier,
    private readonly metrics: Metrics,
    private readonly payments: PaymentsService,
    connections: RedisConnections,
  ) {
    this.claims = new ClaimJournal(connections);
  }

  onApplicationBootstrap(): void {
    this.sweepTimer = setInterval(() => void this.sweepClaims(), this.env.LEASE_SWEEP_INTERVAL_MS);
    this.sweepTimer.unref();
  }

  onModuleDestroy(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  /**
   * Puts back on the queue the slices of claims whose scheduler died before storing them, and of
   * results given back to a worker that did not send them again in time; returns how many.
   */
  async sweepClaims(now = Date.now()): Promise<number> {
    if (this.sweeping) return 0;
    this.sweeping = true;
    try {
      const { lost, unsent } = await this.claims.sweep(now);
      if (lost > 0) this.logger.warn(`${lost} slices claimed but never stored (their scheduler stopped before storing them) put back on the queue`);
      if (unsent > 0) this.logger.warn(`${unsent} slices whose results could not be stored and were not sent again put back on the queue`);
      if (lost + unsent > 0) {
        this.metrics.slicesReturned.inc(lost + unsent);
        this.workers.workAvailable();
      }
      return lost + unsent;
    } catch (error) {
      // Redis is down: the next sweep tries again (the journal lives in Redis, so nothing is lost meanwhile).
      this.logger.debug(`claim sweep failed: ${(error as Error).message}`);
      return 0;
    } finally {
      this.sweeping = false;
    }
  }

  async submit(submitter: ResultsSubmitter, batch: TaskResults): Promise<SubmitOutcome> {
    const workerId = submitter.leaseOwner;
    const now = Date.now();
    const claimId = randomUUID();
    const { jobId, claimed, boundedMs } = await this.claims.claim(claimId, batch.taskId, workerId, batch.outcomes, now + this.env.LEASE_TIMEOUT_MS, {
      now,
      sandboxes: submitter.sandboxes,
      sliceLimitMs: this.env.SLICE_TIME_LIMIT_MS,
    }, now + ResultsService.claimDeadlineMs);
    // Claimed slices not yet stored, recorded as failed or given back: what goes back to the worker if this batch fails.
    const unsettled = new Set<number>();
    batch.outcomes.forEach((outcome, i) => {
      if (claimed[i]) unsettled.add(outcome.sliceIndex);
    });
    const refused: TaskResultsAck['refused'] = [];
    const ok: Array<OkOutcome & { json: string | null; creditedMs: number }> = [];
    const failed: ErrorOutcome[] = [];
    batch.outcomes.forEach((outcome, i) => {
      if (!claimed[i] || jobId !== batch.jobId) {
        refused.push({ sliceIndex: outcome.sliceIndex, code: ErrorCode.ENOTLEASED });
        return;
      }
      if (outcome.status === 'error') {
        failed.push(outcome);
        return;
      }
      const bounded = this.boundedJson(outcome);
      if (bounded === null || typeof bounded === 'string') ok.push({ ...outcome, json: bounded, creditedMs: boundedMs[i] ?? 0 });
      else failed.push(bounded.failure);
    });
    const accepted: number[] = [];
    let paymentOutliers = 0;
    try {
      if (jobId !== null && jobId === batch.jobId) {
        if (ok.length > 0) {
          const priced = await this.payments.priceResults(jobId, ok.map((o) => o.creditedMs), submitter.payee);
          paymentOutliers = priced.outliers;
          if (priced.payments.some((p) => p !== null)) {
            const clamped = ok.filter((o) => o.elapsedMs > o.creditedMs + 1).length;
            if (clamped > 0) this.metrics.paymentTimeClamped.inc(clamped);
          }
          const rows = ok.map((o, i) => ({
            sliceIndex: o.sliceIndex,
            value: o.json,
            // The worker's report, within what a slice can take; the price uses the bounded time.
            elapsedMs: Math.min(o.elapsedMs, this.env.SLICE_TIME_LIMIT_MS),
            payment: priced.payments[i] ?? null,
          }));
          const stored = await this.jobsRepository.insertResults(jobId, workerId, rows, submitter.payee);
          const inserted = new Set(stored.inserted);
          const results = [];
          for (const outcome of ok) {
            unsettled.delete(outcome.sliceIndex);
            if (inserted.has(outcome.sliceIndex)) {
              accepted.push(outcome.sliceIndex);
              results.push({ sliceIndex: outcome.sliceIndex, value: outcome.value });
            } else {
              refused.push({ sliceIndex: outcome.sliceIndex, code: ErrorCode.EDUPLICATE });
            }
          }
          this.metrics.resultsAccepted.inc(accepted.length);
          this.events.results(jobId, results);
          // The results are stored: what follows must not make the worker send them again. A job
          // whose last result was stored but whose end failed here is ended by the reconciler.
          try {
            if (stored.completedJob) await this.jobs.endJob(jobId, 'finished', null);
            else if (accepted.length > 0) await this.jobs.publishProgress(jobId, stored.computed, stored.total);
          } catch (error) {
            this.logger.warn(`results of ${jobId} stored; announcing them failed (the reconciler finishes the job): ${(error as Error).message}`);
          }
        }
        if (failed.length > 0) {
          await this.recordFailures(jobId, workerId, failed);
          for (const outcome of failed) unsettled.delete(outcome.sliceIndex);
        }
      }
    } catch (error) {
      // Nothing of `unsettled` was stored: those slices go back to this worker's lease, so the
      // results it sends again (it is answered EUNAVAILABLE when PostgreSQL is down) are taken.
      // If this fails too, the journal's sweep puts them back on the queue at the claim deadline.
      const back = await this.claims.restore(claimId, [...unsettled], Date.now() + ResultsService.resendWindowMs).catch(() => 0);
      if (back > 0) this.workers.workAvailable();
      this.noteFailure(error, jobId, unsettled.size);
      throw error;
    }
    // Claimed slices of another job than the batch names (a confused worker) go back to its lease too.
    if (unsettled.size > 0) await this.claims.restore(claimId, [...unsettled], Date.now() + ResultsService.resendWindowMs).catch(() => 0);
    else if (claimed.some(Boolean)) await this.claims.release(claimId).catch((error: unknown) => this.logger.warn(`forgetting a settled claim failed: ${(error as Error).message}`));
    if (refused.length > 0) this.metrics.resultsRefused.inc(refused.length);
    return { accepted, refused, paymentOutliers };
  }

  /**
   * A batch that could not be stored. A dependency that is down (PostgreSQL restarting) is
   * expected and retried: logged at most once a second with a count, without a stack. Anything
   * else is the scheduler's own failure, logged in full.
   */
  private noteFailure(error: unknown, jobId: string | null, slices: number): void {
    if (unavailableDependency(error) === null) {
      this.logger.error(`storing ${slices} results of ${jobId} failed: ${(error as Error)?.stack ?? String(error)}`);
      return;
    }
    this.unavailable.count++;
    const now = Date.now();
    if (now - this.unavailable.loggedAt < 1_000) return;
    this.unavailable.loggedAt = now;
    this.logger.warn(`${this.unavailable.count} result batches could not be stored so far (PostgreSQL unavailable: ${(error as Error)?.message}); their slices stay leased for their workers to send again`);
  }

  /** A result's JSON text, or the failed attempt it stands for when it is too deep or too big (checked before anything recurses into it). */
  private boundedJson(outcome: OkOutcome): string | null | { failure: ErrorOutcome } {
    if (outcome.value === undefined) return null;
    const problem = checkBounds(outcome.value, resultBounds);
    let json: string | null = null;
    if (problem === null) {
      json = JSON.stringify(outcome.value) ?? null;
      if (json === null || json.length <= Limits.maxResultBytes) return json;
    }
    this.metrics.resultsFailedBounds.inc();
    const code = problem === 'depth' ? ErrorCode.ETOODEEP : ErrorCode.ERESULTTOOBIG;
    const message = problem === 'depth'
      ? `the result is nested deeper than ${Limits.maxValueDepth} levels (maxValueDepth)`
      : `the result is larger than ${Limits.maxResultBytes} bytes (maxResultBytes)`;
    return { failure: { sliceIndex: outcome.sliceIndex, status: 'error', error: { code, name: 'Error', message }, elapsedMs: outcome.elapsedMs } };
  }

  /** A failed attempt goes back on the queue until a named limit says the job cannot succeed. */
  private async recordFailures(jobId: string, workerId: string, failed: ErrorOutcome[]): Promise<void> {
    for (const outcome of failed) this.events.sliceError(jobId, outcome.sliceIndex, outcome.error);
    const errors = await this.jobsRepository.recordFailures(jobId, workerId, failed.map((f) => ({ sliceIndex: f.sliceIndex, code: f.error.code, message: f.error.message })));
    this.metrics.sliceFailures.inc(failed.length);
    const retry: number[] = [];
    for (const outcome of failed) {
      const attempts = await this.leases.countAttempt(jobId, outcome.sliceIndex);
      if (attempts >= this.env.MAX_ATTEMPTS_PER_SLICE) {
        const code = outcome.error.code in ErrorCode ? outcome.error.code : ErrorCode.EWORKFUNCTION;
        await this.jobs.endJob(jobId, 'failed', {
          code,
          message: `slice ${outcome.sliceIndex} failed ${attempts} times (maxAttemptsPerSlice ${this.env.MAX_ATTEMPTS_PER_SLICE}); last: ${outcome.error.message}`,
        });
        return;
      }
      retry.push(outcome.sliceIndex);
    }
    if (errors >= this.env.MAX_SLICE_ERRORS_PER_JOB) {
      await this.jobs.endJob(jobId, 'failed', { code: ErrorCode.ETOOMANYERRORS, message: `${errors} slice failures reached maxSliceErrorsPerJob (${this.env.MAX_SLICE_ERRORS_PER_JOB})` });
      return;
    }
    if ((await this.leases.requeue(jobId, retry)) > 0) this.workers.workAvailable();
  }
}
