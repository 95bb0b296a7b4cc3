import { Inject, Injectable, Logger } from '@nestjs/common';
import { ErrorCode, type SliceOutcome, type TaskResults, type TaskResultsAck } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { LeaseRepository } from '../dispatch/lease.repository.js';
import { WorkerNotifier } from '../dispatch/worker-notifier.js';
import { JobEvents } from '../jobs/job-events.js';
import { JobsRepository } from '../jobs/jobs.repository.js';
import { JobsService } from '../jobs/jobs.service.js';
import { Metrics } from '../health/metrics.js';
import { PaymentsService } from '../payments/payments.service.js';

/**
 * Accepts a worker's results: a slice's result counts only if the slice is leased to that worker
 * (claimed atomically in Redis) and is the first for the slice (primary key in Postgres).
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

  /** `payee`: the worker's earnings account, paid for each accepted slice of a paid job. */
  async submit(workerId: string, batch: TaskResults, payee: string | null = null): Promise<TaskResultsAck> {
    const indexes = batch.outcomes.map((outcome) => outcome.sliceIndex);
    const { jobId, claimed } = await this.leases.claim(batch.taskId, workerId, indexes, Date.now() + this.env.LEASE_TIMEOUT_MS);
    const refused: TaskResultsAck['refused'] = [];
    const ok: Array<Extract<SliceOutcome, { status: 'ok' }> & { json: string | null }> = [];
    const failed: Array<Extract<SliceOutcome, { status: 'error' }>> = [];
    batch.outcomes.forEach((outcome, i) => {
      if (!claimed[i] || jobId !== batch.jobId) {
        refused.push({ sliceIndex: outcome.sliceIndex, code: ErrorCode.ENOTLEASED });
        return;
      }
      if (outcome.status === 'error') {
        failed.push(outcome);
        return;
      }
      const json = outcome.value === undefined ? null : JSON.stringify(outcome.value);
      ok.push({ ...outcome, json });
    });
    const accepted: number[] = [];
    if (jobId !== null && jobId === batch.jobId) {
      if (ok.length > 0) {
        try {
          const rows = await Promise.all(ok.map(async (o) => ({
            sliceIndex: o.sliceIndex, value: o.json, elapsedMs: o.elapsedMs, payment: await this.payments.priceFor(jobId, o.elapsedMs, payee),
          })));
          const stored = await this.jobsRepository.insertResults(jobId, workerId, rows, payee);
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
    return { accepted, refused };
  }

  /** A failed attempt goes back on the queue until a named limit says the job cannot succeed. */
  private async recordFailures(jobId: string, workerId: string, failed: Array<Extract<SliceOutcome, { status: 'error' }>>): Promise<void> {
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
