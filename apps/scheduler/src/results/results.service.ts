import { Inject, Injectable, Logger } from '@nestjs/common';
import { checkBounds, ErrorCode, Limits, type SliceOutcome, type TaskResults, type TaskResultsAck, type ValueBounds } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { LeaseRepository } from '../dispatch/lease.repository.js';
import { WorkerNotifier } from '../dispatch/worker-notifier.js';
import { JobEvents } from '../jobs/job-events.js';
import { JobsRepository } from '../jobs/jobs.repository.js';
import { JobsService } from '../jobs/jobs.service.js';
import { Metrics } from '../health/metrics.js';
import { PaymentsService } from '../payments/payments.service.js';

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
 */
@Injectable()
export class ResultsService {
  private readonly logger = new Logger(ResultsService.name);

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly leases: LeaseRepository,
    private readonly jobsRepository: JobsRepository,
    private readonly jobs: JobsService,
    private readonly events: JobEvents,
    private readonly workers: WorkerNotifier,
    private readonly metrics: Metrics,
    private readonly payments: PaymentsService,
  ) {}

  async submit(submitter: ResultsSubmitter, batch: TaskResults): Promise<SubmitOutcome> {
    const workerId = submitter.leaseOwner;
    const now = Date.now();
    const { jobId, claimed, boundedMs } = await this.leases.claim(batch.taskId, workerId, batch.outcomes, now + this.env.LEASE_TIMEOUT_MS, {
      now,
      sandboxes: submitter.sandboxes,
      sliceLimitMs: this.env.SLICE_TIME_LIMIT_MS,
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
    if (jobId !== null && jobId === batch.jobId) {
      if (ok.length > 0) {
        try {
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
            if (inserted.has(outcome.sliceIndex)) {
              accepted.push(outcome.sliceIndex);
              results.push({ sliceIndex: outcome.sliceIndex, value: outcome.value });
            } else {
              refused.push({ sliceIndex: outcome.sliceIndex, code: ErrorCode.EDUPLICATE });
            }
          }
          this.metrics.resultsAccepted.inc(accepted.length);
          this.events.results(jobId, results);
          if (stored.completedJob) await this.jobs.endJob(jobId, 'finished', null);
          else if (accepted.length > 0) await this.jobs.publishProgress(jobId, stored.computed, stored.total);
        } catch (error) {
          // The claims are spent but nothing was stored: put the slices back so they run again.
          this.logger.error(`storing ${ok.length} results of ${jobId} failed: ${(error as Error).message}`);
          await this.leases.requeue(jobId, ok.map((o) => o.sliceIndex)).catch(() => undefined);
          throw error;
        }
      }
      if (failed.length > 0) await this.recordFailures(jobId, workerId, failed);
    }
    if (refused.length > 0) this.metrics.resultsRefused.inc(refused.length);
    return { accepted, refused, paymentOutliers };
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
