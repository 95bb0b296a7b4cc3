import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';

export interface PaidJob {
  id: string;
  owner: string;
  status: string;
  total: number;
  offerUnits: string;
  holdId: string | null;
  escrowedSlices: number;
}

export interface UnsettledPayment {
  jobId: string;
  sliceIndex: number;
  payee: string;
  payment: string;
  holdId: string;
}

/** The money columns of the scheduler's tables (jobs' escrow, slice_results' payments). */
@Injectable()
export class PaymentsRepository {
  constructor(private readonly prisma: PrismaService) {}

  async paidJob(jobId: string): Promise<PaidJob | null> {
    const rows = await this.prisma.pool.query<{ id: string; owner: string; status: string; total: string; offer_units: string; hold_id: string | null; escrowed_slices: string }>(
      'SELECT id, owner, status, total, offer_units::text, hold_id, escrowed_slices FROM jobs WHERE id = $1',
      [jobId],
    );
    const row = rows.rows[0];
    if (!row) return null;
    return { id: row.id, owner: row.owner, status: row.status, total: Number(row.total), offerUnits: row.offer_units, holdId: row.hold_id, escrowedSlices: Number(row.escrowed_slices) };
  }

  async setOffer(jobId: string, offerUnits: string): Promise<void> {
    await this.prisma.pool.query('UPDATE jobs SET offer_units = $2 WHERE id = $1', [jobId, offerUnits]);
  }

  /** Records a successful escrow: the hold and how many slices it now covers; clears ENOFUNDS. */
  async recordEscrow(jobId: string, holdId: string, escrowedSlices: number): Promise<void> {
    await this.prisma.pool.query(
      `UPDATE jobs SET hold_id = $2, escrowed_slices = GREATEST(escrowed_slices, $3), funds_required = NULL,
         failure_code = CASE WHEN failure_code = 'ENOFUNDS' THEN NULL ELSE failure_code END,
         failure_message = CASE WHEN failure_code = 'ENOFUNDS' THEN NULL ELSE failure_message END
       WHERE id = $1`,
      [jobId, holdId, escrowedSlices],
    );
  }

  /** Pauses a running (or not yet started) job for lack of funds; false when it had ended. */
  async pauseForFunds(jobId: string, message: string, fundsRequired: string): Promise<boolean> {
    const rows = await this.prisma.pool.query(
      `UPDATE jobs SET status = 'paused', failure_code = 'ENOFUNDS', failure_message = $2, funds_required = $3
       WHERE id = $1 AND status IN ('running', 'paused') RETURNING id`,
      [jobId, message, fundsRequired],
    );
    return (rows.rowCount ?? 0) > 0;
  }

  /** Running paid jobs whose escrow does not cover all their slices yet. */
  async underEscrowed(limit: number, holdlessGraceMs: number): Promise<PaidJob[]> {
    const rows = await this.prisma.pool.query<{ id: string }>(
      `SELECT id FROM jobs WHERE status = 'running' AND offer_units > 0 AND escrowed_slices < total
         AND (hold_id IS NOT NULL OR created_at < now() - make_interval(secs => $2::double precision / 1000))
       ORDER BY created_at LIMIT $1`,
      [limit, holdlessGraceMs],
    );
    const jobs = await Promise.all(rows.rows.map((row) => this.paidJob(row.id)));
    return jobs.filter((job): job is PaidJob => job !== null);
  }

  async unsettled(limit: number): Promise<UnsettledPayment[]> {
    const rows = await this.prisma.pool.query<{ job_id: string; slice_index: string; payee: string; payment: string; hold_id: string }>(
      `SELECT r.job_id, r.slice_index, r.payee, r.payment::text, j.hold_id FROM slice_results r JOIN jobs j ON j.id = r.job_id
       WHERE r.settled_at IS NULL AND r.payment IS NOT NULL AND j.hold_id IS NOT NULL
       ORDER BY r.job_id, r.slice_index LIMIT $1`,
      [limit],
    );
    return rows.rows.map((row) => ({ jobId: row.job_id, sliceIndex: Number(row.slice_index), payee: row.payee, payment: row.payment, holdId: row.hold_id }));
  }

  async markSettled(jobId: string, sliceIndexes: number[]): Promise<void> {
    await this.prisma.pool.query('UPDATE slice_results SET settled_at = now() WHERE job_id = $1 AND slice_index = ANY($2::bigint[])', [jobId, sliceIndexes]);
  }

  /** Ended paid jobs whose hold still reserves funds and whose payments are all posted. */
  async releasable(limit: number): Promise<Array<{ id: string; holdId: string }>> {
    const rows = await this.prisma.pool.query<{ id: string; hold_id: string }>(
      `SELECT j.id, j.hold_id FROM jobs j
       WHERE j.status IN ('finished', 'cancelled', 'failed') AND j.hold_id IS NOT NULL AND j.hold_released_at IS NULL
         AND NOT EXISTS (SELECT 1 FROM slice_results r WHERE r.job_id = j.id AND r.settled_at IS NULL AND r.payment IS NOT NULL)
       LIMIT $1`,
      [limit],
    );
    return rows.rows.map((row) => ({ id: row.id, holdId: row.hold_id }));
  }

  async markReleased(jobId: string): Promise<void> {
    await this.prisma.pool.query('UPDATE jobs SET hold_released_at = now() WHERE id = $1', [jobId]);
  }

  /**
   * The newest `perJob` payments (smallest units, newest slice first) of every running or paused
   * paid job: what the slice-time samples are rebuilt from after Redis lost them. Newest by slice
   * index (the primary key's order, read backwards), close enough to arrival order for a median.
   */
  async recentPayments(perJob: number): Promise<Map<string, string[]>> {
    const rows = await this.prisma.pool.query<{ id: string; payment: string }>(
      `SELECT j.id, r.payment::text AS payment FROM jobs j
         CROSS JOIN LATERAL (SELECT payment FROM slice_results
                              WHERE job_id = j.id AND payment IS NOT NULL ORDER BY slice_index DESC LIMIT $1) r
        WHERE j.status IN ('running', 'paused') AND j.offer_units > 0`,
      [perJob],
    );
    const byJob = new Map<string, string[]>();
    for (const row of rows.rows) {
      const list = byJob.get(row.id);
      if (list) list.push(row.payment);
      else byJob.set(row.id, [row.payment]);
    }
    return byJob;
  }
}
