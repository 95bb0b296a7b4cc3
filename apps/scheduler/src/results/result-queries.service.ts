import { unitsToDcc } from '../payments/domain/pricing.js';
import { Injectable } from '@nestjs/common';
import type { ResultsDeleteReply, ResultsListPage, ResultsPage, ResultStatsPage, SliceInfo, SliceInfoPage, SliceSet } from '@commune/protocol';
import { JobsService } from '../jobs/jobs.service.js';
import { ResultsRepository } from './results.repository.js';

/** Payment per slice while there is no bank: every job is free. */

/**
 * The owner's side of result handles (spec "Result Handles": list, delete, fetch, stat) and
 * compute.getSliceInfo. Every call checks that the signer owns the job.
 */
@Injectable()
export class ResultQueries {
  constructor(private readonly jobs: JobsService, private readonly results: ResultsRepository) {}

  async list(signer: string, jobId: string, slices: SliceSet | undefined, after: number, limit: number): Promise<ResultsListPage> {
    await this.jobs.ownedStatus(signer, jobId, 'list its results');
    const runs = await this.results.runs(jobId, slices, after, limit);
    return {
      jobId,
      slices: { sparse: runs.map((run) => (run.step === 1 ? { start: run.first, end: run.last } : { start: run.first, end: run.last, step: run.step })) },
      count: runs.reduce((sum, run) => sum + run.count, 0),
      nextAfter: runs.length === limit ? runs[runs.length - 1]!.first : null,
    };
  }

  async delete(signer: string, jobId: string, slices: SliceSet | undefined): Promise<ResultsDeleteReply> {
    await this.jobs.ownedStatus(signer, jobId, 'delete its results');
    return { jobId, deleted: await this.results.delete(jobId, slices) };
  }

  async values(signer: string, jobId: string, slices: SliceSet | undefined, after: number, limit: number): Promise<ResultsPage> {
    await this.jobs.ownedStatus(signer, jobId, 'fetch its results');
    const rows = await this.results.values(jobId, slices, after, limit);
    return {
      jobId,
      results: rows.map((row) => ({ sliceIndex: row.sliceIndex, value: row.value === null ? undefined : JSON.parse(row.value) })),
      nextAfter: rows.length === limit ? rows[rows.length - 1]!.sliceIndex : null,
    };
  }

  async stat(signer: string, jobId: string, slices: SliceSet | undefined, after: number, limit: number): Promise<ResultStatsPage> {
    await this.jobs.ownedStatus(signer, jobId, 'read its result statistics');
    const rows = await this.results.stats(jobId, slices, after, limit);
    return {
      jobId,
      stats: rows.map((row) => ({
        sliceIndex: row.sliceIndex,
        distributedTime: row.distributedAt?.toISOString() ?? null,
        computedTime: row.computedAt.toISOString(),
        payment: unitsToDcc(row.paymentUnits),
      })),
      nextAfter: rows.length === limit ? rows[rows.length - 1]!.sliceIndex : null,
    };
  }

  async sliceInfo(signer: string, jobId: string, after: number, limit: number): Promise<SliceInfoPage> {
    const status = await this.jobs.ownedStatus(signer, jobId, 'read its slices');
    const rows = await this.results.history(jobId, after, limit);
    const slices: SliceInfo[] = rows.map((row) => ({
      sliceIndex: row.sliceIndex,
      status: row.computedAt === null ? 'failed' : row.deletedAt === null ? 'computed' : 'deleted',
      attempts: row.failures.length + (row.computedAt === null ? 0 : 1),
      distributedTime: row.distributedAt?.toISOString() ?? null,
      computedTime: row.computedAt?.toISOString() ?? null,
      elapsedMs: row.elapsedMs,
      failures: row.failures.map((failure) => ({ code: failure.code, message: failure.message, time: failure.time.toISOString() })),
    }));
    return { jobId, status, slices, nextAfter: rows.length === limit ? rows[rows.length - 1]!.sliceIndex : null };
  }
}
