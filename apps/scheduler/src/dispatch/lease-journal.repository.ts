import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';

/** Consecutive runs of slice numbers: [3, 4, 5, 9] -> [[3, 5], [9, 9]]. */
export function runsOf(sliceIndexes: readonly number[]): Array<[number, number]> {
  const sorted = [...sliceIndexes].sort((a, b) => a - b);
  const runs: Array<[number, number]> = [];
  for (const slice of sorted) {
    const last = runs[runs.length - 1];
    if (last && slice <= last[1] + 1) last[1] = Math.max(last[1], slice);
    else runs.push([slice, slice]);
  }
  return runs;
}

/**
 * Records when slices are handed to workers, one row per consecutive run of a lease (a fresh
 * lease from a job's cursor is one run), so results.stat and getSliceInfo can tell a slice's
 * first distribution. One small insert per task, never per slice.
 */
@Injectable()
export class LeaseJournalRepository {
  constructor(private readonly prisma: PrismaService) {}

  async record(jobId: string, sliceIndexes: readonly number[]): Promise<void> {
    const runs = runsOf(sliceIndexes);
    if (runs.length === 0) return;
    await this.prisma.pool.query(
      'INSERT INTO slice_leases (job_id, first_slice, last_slice) SELECT $1, f, l FROM unnest($2::bigint[], $3::bigint[]) AS t(f, l)',
      [jobId, runs.map((run) => run[0]), runs.map((run) => run[1])],
    );
  }
}
