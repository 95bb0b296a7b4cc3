import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { BigNumber } from 'bignumber.js';
import { CommuneError, ErrorCode, hashOf, isCommuneError } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { LeaseRepository } from '../dispatch/lease.repository.js';
import { RedisConnections } from '../redis/redis.module.js';
import { BankClient } from './bank.client.js';
import { dccToUnits, escrowFor, PaymentBounds, sliceMsOfPayment, slicePayment, unitsToDcc, type PricingPolicy } from './domain/pricing.js';
import { PaymentsRepository, type PaidJob, type UnsettledPayment } from './payments.repository.js';
import { SliceTimesRepository } from './slice-times.repository.js';

export type EscrowOutcome =
  | { kind: 'free' }
  | { kind: 'escrowed'; escrowedSlices: number }
  | { kind: 'nofunds'; fundsRequired: string; message: string };

/**
 * Money on the scheduler's side: escrow holds for paid jobs (in steps of ESCROW_SLICES), the
 * price of each accepted slice, settlement of payments to the bank in batches, and releasing
 * what is left of a hold when its job ends. The bank is the authority; every call to it carries
 * an idempotency key derived from the job (and slice), so retries never pay twice.
 */
@Injectable()
export class PaymentsService implements OnModuleInit {
  private readonly logger = new Logger(PaymentsService.name);
  private readonly policy: PricingPolicy;
  private readonly feeUnits: string;
  /** Offer per slice of recent jobs (it never changes once deployed). */
  private readonly offers = new Map<string, string>();
  static readonly maxCachedOffers = 4096;
  /** A hold lives this long unless released (the bank also expires holds of vanished jobs). */
  static readonly holdLifetimeMs = 30 * 24 * 3600 * 1000;
  /**
   * A paid job's first escrow belongs to its deploy: re-escrow leaves a job with no hold alone
   * this long, so the two never race for the same idempotency key (a deploy that died before
   * making its hold is picked up after it).
   */
  static readonly deployEscrowGraceMs = 30_000;

  constructor(
    @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv,
    private readonly bank: BankClient,
    private readonly repository: PaymentsRepository,
    private readonly leases: LeaseRepository,
    private readonly sliceTimes: SliceTimesRepository,
    private readonly connections: RedisConnections,
  ) {
    this.policy = { marketRateUnitsPerSecond: dccToUnits(env.MARKET_RATE_DCC_PER_SECOND), minimumSliceUnits: dccToUnits(env.MINIMUM_SLICE_PAYMENT_DCC) };
    this.feeUnits = dccToUnits(env.OPERATOR_FEE_DCC);
  }

  onModuleInit(): void {
    // The peer samples that bound paid slice times lived in Redis: after a loss each running paid
    // job gets them back from its stored payments, so the bound holds from the first slice after.
    this.connections.generation.onLoss(() => this.reseedSliceTimes());
  }

  /** Rebuilds the slice-time samples of running paid jobs from PostgreSQL; returns how many jobs got samples back. */
  async reseedSliceTimes(): Promise<number> {
    const recent = await this.repository.recentPayments(PaymentBounds.samplesKept);
    let seeded = 0;
    for (const [jobId, payments] of recent) {
      const times = payments.map((payment) => sliceMsOfPayment(payment, this.policy)).filter((ms): ms is number => ms !== null);
      if ((await this.sliceTimes.seed(jobId, times)) > 0) seeded++;
    }
    if (seeded > 0) this.logger.log(`slice-time samples of ${seeded} paid jobs rebuilt from their payments`);
    return seeded;
  }

  paidJob(jobId: string): Promise<PaidJob | null> {
    return this.repository.paidJob(jobId);
  }

  get bankEnabled(): boolean {
    return this.bank.enabled;
  }

  /** What one slice reserves in the hold: the offer plus the operator's fee. */
  private perSlice(offerUnits: string): string {
    return new BigNumber(offerUnits).plus(this.feeUnits).toFixed(0);
  }

  /** Escrows the first slices of a new paid job. A job that cannot be covered is paused (ENOFUNDS). */
  async escrowOnDeploy(jobId: string, owner: string, offerDcc: string, total: number): Promise<EscrowOutcome> {
    const offerUnits = dccToUnits(offerDcc);
    if (offerUnits === '0') {
      this.remember(jobId, offerUnits); // results of this replica's workers then price it without a query
      return { kind: 'free' };
    }
    await this.repository.setOffer(jobId, offerUnits);
    this.remember(jobId, offerUnits);
    return this.escrowNext({ id: jobId, owner, status: 'running', total, offerUnits, holdId: null, escrowedSlices: 0 });
  }

  /** Covers the next ESCROW_SLICES slices of a job (or all that are left) with its hold. */
  async escrowNext(job: PaidJob): Promise<EscrowOutcome> {
    const slices = Math.min(this.env.ESCROW_SLICES, job.total - job.escrowedSlices);
    if (slices <= 0) return { kind: 'escrowed', escrowedSlices: job.escrowedSlices };
    const target = job.escrowedSlices + slices;
    return this.addToHold(job, escrowFor(this.perSlice(job.offerUnits), slices), target, `escrow:${job.id}:${target}`, true);
  }

  /** spec job.escrow(amount): adds `amountUnits` to the job's hold. */
  async escrowAmount(job: PaidJob, amountUnits: string, nonce: string): Promise<EscrowOutcome> {
    const covered = new BigNumber(amountUnits).div(this.perSlice(job.offerUnits)).integerValue(BigNumber.ROUND_FLOOR).toNumber();
    // A refused top-up changes nothing: the job keeps running (or stays paused) as it was.
    return this.addToHold(job, amountUnits, Math.min(job.total, job.escrowedSlices + covered), `escrow:${job.id}:amount:${nonce}`, false);
  }

  /** `pauseOnShortfall`: an escrow step the job needs to go on pauses it (ENOFUNDS) when it cannot be covered. */
  private async addToHold(job: PaidJob, amountUnits: string, targetSlices: number, idempotencyKey: string, pauseOnShortfall: boolean): Promise<EscrowOutcome> {
    try {
      const hold = job.holdId
        ? await this.bank.increaseHold(job.holdId, { idempotencyKey, amount: amountUnits })
        : await this.bank.createHold({ idempotencyKey, account: job.owner, amount: amountUnits, reference: job.id, expiresAt: Date.now() + PaymentsService.holdLifetimeMs });
      await this.repository.recordEscrow(job.id, hold.holdId, targetSlices);
      await this.leases.setEscrowed(job.id, targetSlices);
      return { kind: 'escrowed', escrowedSlices: targetSlices };
    } catch (error) {
      if (!isCommuneError(error) || error.code !== ErrorCode.ENOFUNDS) throw error;
      const balance = await this.bank.account(job.owner).then((account) => account.balance, () => '0');
      const fundsRequired = BigNumber.max(0, new BigNumber(amountUnits).minus(balance)).toFixed(0);
      const message = `the payment account ${job.owner} lacks ${unitsToDcc(fundsRequired)} DCC to escrow job ${job.id}`;
      if (pauseOnShortfall) {
        await this.repository.pauseForFunds(job.id, message, fundsRequired);
        await this.leases.setRunning(job.id, 'paused');
      }
      return { kind: 'nofunds', fundsRequired, message };
    }
  }

  /**
   * The payment (smallest unit) for each accepted slice of a batch, or null for a free job or a
   * worker with no earnings account. `times` are the slice times the scheduler observed it may
   * credit (LeaseRepository.claim); the job's peers bound them further (PaymentBounds), and
   * `outliers` says how many were outliers.
   */
  async priceResults(jobId: string, times: number[], payee: string | null): Promise<{ payments: Array<string | null>; outliers: number }> {
    const none = { payments: times.map(() => null), outliers: 0 };
    if (payee === null || times.length === 0) return none;
    let offerUnits = this.offers.get(jobId);
    if (offerUnits === undefined) {
      offerUnits = (await this.repository.paidJob(jobId))?.offerUnits ?? '0';
      this.remember(jobId, offerUnits);
    }
    if (offerUnits === '0') return none;
    const bounded = await this.sliceTimes.bound(jobId, times);
    const unitsOffered = offerUnits;
    return {
      payments: bounded.map((time) => slicePayment(unitsOffered, time.ms, this.policy)),
      outliers: bounded.filter((time) => time.outlier).length,
    };
  }


  private remember(jobId: string, offerUnits: string): void {
    this.offers.set(jobId, offerUnits);
    if (this.offers.size > PaymentsService.maxCachedOffers) this.offers.delete(this.offers.keys().next().value!);
  }

  /**
   * Posts unsettled payments to the bank, one batch per job. A batch that fails (bank down or
   * restarting) stays unsettled and is posted again next time: each payment's key (job:slice)
   * makes the bank pay it at most once.
   */
  async settle(): Promise<number> {
    if (!this.bank.enabled) return 0;
    const rows = await this.repository.unsettled(this.env.SETTLEMENT_BATCH_SIZE);
    const byJob = new Map<string, UnsettledPayment[]>();
    for (const row of rows) byJob.set(row.jobId, [...(byJob.get(row.jobId) ?? []), row]);
    let settled = 0;
    for (const [jobId, payments] of byJob) {
      const keys = payments.map((p) => `pay:${jobId}:${p.sliceIndex}`);
      try {
        await this.bank.postPayments(payments[0]!.holdId, {
          idempotencyKey: `settle:${hashOf(keys).slice(2, 42)}`,
          payments: payments.map((p, i) => ({ key: keys[i]!, to: p.payee, amount: p.payment })),
          feePerPayment: this.feeUnits,
        });
        await this.repository.markSettled(jobId, payments.map((p) => p.sliceIndex));
        settled += payments.length;
      } catch (error) {
        this.logger.warn(`settling ${payments.length} payments of ${jobId} failed (retried next run): ${(error as Error).message}`);
      }
    }
    return settled;
  }

  /** Re-escrows running jobs whose dispatch nears the end of their escrow; returns jobs paused for ENOFUNDS. */
  async reescrowRunning(): Promise<string[]> {
    if (!this.bank.enabled) return [];
    const paused: string[] = [];
    for (const job of await this.repository.underEscrowed(100, PaymentsService.deployEscrowGraceMs)) {
      const state = await this.leases.escrowState(job.id);
      if (state === null) continue; // not opened yet (its deploy is escrowing) or forgotten
      // An escrow step recorded in Postgres whose Redis update was lost: dispatch would wait for
      // slices that are paid for, so bring Redis up to what the hold covers first.
      if (state.escrowed < job.escrowedSlices) await this.leases.setEscrowed(job.id, job.escrowedSlices);
      if (state.cursor < job.escrowedSlices - Math.floor(this.env.ESCROW_SLICES / 2)) continue;
      const outcome = await this.escrowNext(job).catch((error: Error) => {
        this.logger.warn(`re-escrow of ${job.id} failed (retried next run): ${error.message}`);
        return null;
      });
      if (outcome?.kind === 'nofunds') paused.push(job.id);
    }
    return paused;
  }

  /** Gives back what is left of the holds of ended jobs whose payments have all been posted. */
  async releaseEnded(): Promise<number> {
    if (!this.bank.enabled) return 0;
    let released = 0;
    for (const job of await this.repository.releasable(100)) {
      try {
        await this.bank.releaseHold(job.holdId, `release:${job.id}`);
      } catch (error) {
        if (!(error instanceof CommuneError && error.code === ErrorCode.EHOLDCLOSED)) {
          this.logger.warn(`releasing the hold of ${job.id} failed (retried next run): ${(error as Error).message}`);
          continue;
        }
      }
      await this.repository.markReleased(job.id);
      released++;
    }
    return released;
  }
}
