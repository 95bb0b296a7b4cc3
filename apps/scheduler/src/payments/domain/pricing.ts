import { BigNumber } from 'bignumber.js';
import { CommuneError, DCC_DECIMALS, ErrorCode } from '@commune/protocol';

/** 10^18: DCC amounts travel as integers in the smallest unit. */
const unit = new BigNumber(10).pow(DCC_DECIMALS);

/** A DCC decimal string ("0.0001") as an integer string in the smallest unit; EINVAL past 18 decimals. */
export function dccToUnits(dcc: string): string {
  const value = new BigNumber(dcc);
  if (!value.isFinite() || value.isNegative()) throw new CommuneError(ErrorCode.EINVAL, `not a DCC amount: ${dcc}`);
  const units = value.times(unit);
  if (!units.isInteger()) throw new CommuneError(ErrorCode.EINVAL, `${dcc} DCC has more than ${DCC_DECIMALS} decimals`);
  return units.toFixed(0);
}

export function unitsToDcc(units: string): string {
  return new BigNumber(units).div(unit).toFixed();
}

/**
 * How a paid slice's time is bounded before it is priced (the worker's report alone never sets its
 * pay). First by what the scheduler observed (claimScript: lease to result, x declared sandboxes per
 * task, and SLICE_TIME_LIMIT_MS), then by the job's peers: once a job has `minPeerSamples` accepted
 * paid slice times, a time above `outlierFactor` x their median is an outlier. An outlier's result
 * is kept (its value is not suspect for its timing alone) and paid as if it took the bound; it is
 * counted (commune_payment_outliers_total) and logged, and a worker connection with more than
 * `maxOutliersPerWorker` outliers is paid nothing more and gets no more paid work.
 */
export const PaymentBounds = {
  outlierFactor: 10,
  minPeerSamples: 8,
  /** Recent accepted slice times kept per job (the median's window). */
  samplesKept: 101,
  /** They are forgotten this long after the job's last paid result. */
  samplesTtlMs: 24 * 3600 * 1000,
  maxOutliersPerWorker: 10,
} as const;

export interface PricingPolicy {
  /** Market rate, smallest units per second of slice time on a reference core. */
  marketRateUnitsPerSecond: string;
  /** The least a slice is priced at (the market rate's floor for very short slices), smallest units. */
  minimumSliceUnits: string;
}

/**
 * What one accepted slice pays its worker: its measured cost (elapsed time) at the market rate,
 * at least the floor, and never above the job's offer per slice.
 */
export function slicePayment(offerUnits: string, elapsedMs: number, policy: PricingPolicy): string {
  const measured = new BigNumber(policy.marketRateUnitsPerSecond).times(Math.max(0, elapsedMs)).div(1000).integerValue(BigNumber.ROUND_CEIL);
  const priced = BigNumber.max(measured, policy.minimumSliceUnits);
  return BigNumber.min(priced, offerUnits).toFixed(0);
}

/**
 * The slice time a stored payment stands for (slicePayment read backwards): exact between the
 * minimum and the offer, a bound at either end. What the peer samples are rebuilt from after Redis
 * lost them; a market rate of 0 pays nothing by time, so nothing can be read back.
 */
export function sliceMsOfPayment(paymentUnits: string, policy: PricingPolicy): number | null {
  const rate = new BigNumber(policy.marketRateUnitsPerSecond);
  if (!rate.isFinite() || rate.lte(0)) return null;
  const ms = new BigNumber(paymentUnits).times(1000).div(rate).toNumber();
  return Number.isFinite(ms) && ms >= 0 ? ms : null;
}

/** Escrow for the next `slices` slices at the job's offer (the most they can cost). */
export function escrowFor(offerUnits: string, slices: number): string {
  return new BigNumber(offerUnits).times(slices).toFixed(0);
}
