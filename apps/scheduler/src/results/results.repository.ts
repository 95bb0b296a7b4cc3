import { Injectable } from '@nestjs/common';
import { Limits, type SliceSet } from '@commune/protocol';
import { PrismaService } from '../database/prisma.service.js';

/** A run of computed slices: first, first + step, ..., last. */
export interface SliceRun {
  first: number;
  last: number;
  step: number;
  count: number;
}

export interface StoredSliceStat {
  sliceIndex: number;
  distributedAt: Date | null;
  computedAt: Date;
  /** What the slice paid its worker, DCC (smallest unit); '0' for free work. */
  paymentUnits: string;
}

export interface StoredSliceHistory {
  sliceIndex: number;
  computedAt: Date | null;
  deletedAt: Date | null;
  elapsedMs: number | null;
  distributedAt: Date | null;
  failures: Array<{ code: string; message: string; time: Date }>;
}

/** The whole job as one range when the caller gave no slice set. */
const everySlice: SliceSet = { sparse: [{ start: 0, end: Number.MAX_SAFE_INTEGER, step: 1 }] };

/**
 * The ranges of a slice set as unnest() arguments: ($n index, $n+1 start, $n+2 end, $n+3 step).
 * The SQL joins on `slice_index BETWEEN a AND b AND (slice_index - a) % st = 0`.
 */
function rangeParameters(set: SliceSet | undefined): [number[], number[], number[], number[]] {
  const ranges = (set ?? everySlice).sparse;
  return [ranges.map((_, k) => k), ranges.map((r) => r.start), ranges.map((r) => r.end), ranges.map((r) => r.step ?? 1)];
}

const rangesCte = (first: number) =>
  `r AS (SELECT * FROM unnest($${first}::int[], $${first + 1}::bigint[], $${first + 2}::bigint[], $${first + 3}::bigint[]) AS r(k, a, b, st))`;
const inRanges = (column: string) => `EXISTS (SELECT 1 FROM r WHERE ${column} BETWEEN r.a AND r.b AND (${column} - r.a) % r.st = 0)`;

/**
 * The first lease time of slice `s`: the earliest lease run covering it. Runs are at most one task
 * (maxSlicesPerTask slices) long, so only runs starting in (s - maxSlicesPerTask, s] can cover it.
 */
const firstLeaseOf = (jobParameter: string, slice: string) =>
  `(SELECT min(l.leased_at) FROM slice_leases l WHERE l.job_id = ${jobParameter}
      AND l.first_slice BETWEEN ${slice} - ${Limits.maxSlicesPerTask - 1} AND ${slice} AND l.last_slice >= ${slice})`;

/** Result handles' list/delete/fetch/stat and getSliceInfo, in Postgres. */
@Injectable()
export class ResultsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Computed (not deleted) slices in `set` as runs, per range of the set (a run follows its range's
   * step), ordered by first slice; `after` skips runs starting at or before it.
   */
  async runs(jobId: string, set: SliceSet | undefined, after: number, limit: number): Promise<SliceRun[]> {
    const rows = await this.prisma.pool.query<{ first: string; last: string; st: string; n: string }>(
      `WITH ${rangesCte(2)},
       m AS (
         SELECT r.k, r.st, s.slice_index, (s.slice_index - r.a) / r.st - row_number() OVER (PARTITION BY r.k ORDER BY s.slice_index) AS g
         FROM r JOIN slice_results s ON s.job_id = $1 AND s.deleted_at IS NULL
           AND s.slice_index BETWEEN r.a AND r.b AND (s.slice_index - r.a) % r.st = 0
       )
       SELECT min(slice_index) AS first, max(slice_index) AS last, st, count(*) AS n FROM m
       GROUP BY k, st, g HAVING min(slice_index) > $6 ORDER BY first, k LIMIT $7`,
      [jobId, ...rangeParameters(set), after, limit],
    );
    return rows.rows.map((row) => ({ first: Number(row.first), last: Number(row.last), step: Number(row.st), count: Number(row.n) }));
  }

  /** Drops the values of computed slices in `set`; the rows stay, so no slice is computed twice. */
  async delete(jobId: string, set: SliceSet | undefined): Promise<number> {
    const result = await this.prisma.pool.query(
      `WITH ${rangesCte(2)}
       UPDATE slice_results s SET value = NULL, deleted_at = now()
       WHERE s.job_id = $1 AND s.deleted_at IS NULL AND ${inRanges('s.slice_index')}`,
      [jobId, ...rangeParameters(set)],
    );
    return result.rowCount ?? 0;
  }

  /** Result values of slices in `set` after `after`, ascending. */
  async values(jobId: string, set: SliceSet | undefined, after: number, limit: number): Promise<Array<{ sliceIndex: number; value: string | null }>> {
    const rows = await this.prisma.pool.query<{ slice_index: string; value: string | null }>(
      `WITH ${rangesCte(2)}
       SELECT s.slice_index, s.value FROM slice_results s
       WHERE s.job_id = $1 AND s.deleted_at IS NULL AND s.slice_index > $6 AND ${inRanges('s.slice_index')}
       ORDER BY s.slice_index LIMIT $7`,
      [jobId, ...rangeParameters(set), after, limit],
    );
    return rows.rows.map((row) => ({ sliceIndex: Number(row.slice_index), value: row.value }));
  }

  /** When each computed slice in `set` was first leased and when its result arrived. */
  async stats(jobId: string, set: SliceSet | undefined, after: number, limit: number): Promise<StoredSliceStat[]> {
    const rows = await this.prisma.pool.query<{ slice_index: string; created_at: Date; distributed_at: Date | null; payment: string | null }>(
      `WITH ${rangesCte(2)}
       SELECT s.slice_index, s.created_at, ${firstLeaseOf('$1', 's.slice_index')} AS distributed_at, s.payment::text AS payment FROM slice_results s
       WHERE s.job_id = $1 AND s.deleted_at IS NULL AND s.slice_index > $6 AND ${inRanges('s.slice_index')}
       ORDER BY s.slice_index LIMIT $7`,
      [jobId, ...rangeParameters(set), after, limit],
    );
    return rows.rows.map((row) => ({ sliceIndex: Number(row.slice_index), computedAt: row.created_at, distributedAt: row.distributed_at, paymentUnits: row.payment ?? '0' }));
  }

  /** Slices with a result or a failed attempt after `after`, ascending, with their history. */
  async history(jobId: string, after: number, limit: number): Promise<StoredSliceHistory[]> {
    const rows = await this.prisma.pool.query<{
      slice_index: string;
      created_at: Date | null;
      deleted_at: Date | null;
      elapsed_ms: number | null;
      distributed_at: Date | null;
      failures: Array<{ code: string; message: string; time: string }> | null;
    }>(
      `WITH ids AS (
         (SELECT slice_index FROM slice_results WHERE job_id = $1 AND slice_index > $2 ORDER BY slice_index LIMIT $3)
         UNION
         (SELECT DISTINCT slice_index FROM slice_failures WHERE job_id = $1 AND slice_index > $2 ORDER BY slice_index LIMIT $3)
       ), page AS (SELECT slice_index FROM ids ORDER BY slice_index LIMIT $3)
       SELECT p.slice_index, r.created_at, r.deleted_at, r.elapsed_ms, ${firstLeaseOf('$1', 'p.slice_index')} AS distributed_at,
         (SELECT json_agg(json_build_object('code', f.code, 'message', f.message, 'time', f.created_at) ORDER BY f.id)
            FROM slice_failures f WHERE f.job_id = $1 AND f.slice_index = p.slice_index) AS failures
       FROM page p LEFT JOIN slice_results r ON r.job_id = $1 AND r.slice_index = p.slice_index
       ORDER BY p.slice_index`,
      [jobId, after, limit],
    );
    return rows.rows.map((row) => ({
      sliceIndex: Number(row.slice_index),
      computedAt: row.created_at,
      deletedAt: row.deleted_at,
      elapsedMs: row.elapsed_ms,
      distributedAt: row.distributed_at,
      failures: (row.failures ?? []).map((failure) => ({ code: failure.code, message: failure.message, time: new Date(failure.time) })),
    }));
  }
}
