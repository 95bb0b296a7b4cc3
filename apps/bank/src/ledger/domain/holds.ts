import { CommuneError, ErrorCode, type Hold, type Payment } from '@commune/protocol';
import { formatUnits, toUnits, ZERO, type Units } from './units.js';

export type HoldStatus = Hold['status'];

/** A hold as the ledger sees it; `remaining` is the balance of the hold's escrow account. */
export interface HoldState {
  id: string;
  accountId: string;
  ownerAddress: string;
  escrowAccountId: string;
  escrowAddress: string;
  reference: string;
  amount: Units;
  posted: Units;
  remaining: Units;
  status: HoldStatus;
  expiresAt: Date;
}

/** The escrow account of a hold: an account of its own, so a hold is ordinary double entry. */
export function escrowAddressOf(holdId: string): string {
  return `hold:${holdId}`;
}

/** Refuses (EHOLDCLOSED) a change to a hold that was released, expired or is past its expiry. */
export function assertHoldOpen(hold: HoldState, now: number): void {
  if (hold.status !== 'held') throw new CommuneError(ErrorCode.EHOLDCLOSED, `hold ${hold.id} is ${hold.status}: a hold resolves once`);
  if (hold.expiresAt.getTime() <= now) {
    throw new CommuneError(ErrorCode.EHOLDCLOSED, `hold ${hold.id} expired at ${hold.expiresAt.toISOString()}; it is being returned to its account`);
  }
}

/** Refuses (EHOLDCLOSED) resolving a hold twice. */
export function assertHoldUnresolved(hold: HoldState): void {
  if (hold.status !== 'held') throw new CommuneError(ErrorCode.EHOLDCLOSED, `hold ${hold.id} is already ${hold.status}: a hold resolves once`);
}

/** Checks a requested expiry: in the future and no further than `maxLifetimeMs`. */
export function checkHoldExpiry(expiresAt: number, now: number, maxLifetimeMs: number): Date {
  if (expiresAt <= now) throw new CommuneError(ErrorCode.EINVAL, `expiresAt ${expiresAt} is not in the future`);
  if (expiresAt > now + maxLifetimeMs) throw new CommuneError(ErrorCode.EINVAL, `expiresAt lies more than ${maxLifetimeMs} ms ahead`);
  return new Date(expiresAt);
}

export interface PaymentPlan {
  /** The payments to make now: first occurrence of each key not paid before. */
  fresh: Array<Payment & { amountUnits: Units }>;
  /** Requests whose key was paid before (or repeats a key within this batch). */
  alreadyPaid: number;
  fees: Units;
  /** Paid out of the hold: fresh amounts plus fees. */
  total: Units;
}

/**
 * Plans a batch of payments out of a hold. `paidBefore` holds the keys that already have a
 * payment. The whole batch is refused (ENOFUNDS, nothing changes) when it exceeds what remains.
 */
export function planPayments(hold: HoldState, payments: readonly Payment[], feePerPayment: Units, paidBefore: ReadonlySet<string>): PaymentPlan {
  const seen = new Set<string>();
  const fresh: PaymentPlan['fresh'] = [];
  let total = ZERO;
  for (const payment of payments) {
    if (seen.has(payment.key) || paidBefore.has(payment.key)) continue;
    seen.add(payment.key);
    const amountUnits = toUnits(payment.amount);
    fresh.push({ ...payment, amountUnits });
    total = total.plus(amountUnits);
  }
  const fees = feePerPayment.times(fresh.length);
  total = total.plus(fees);
  if (total.gt(hold.remaining)) {
    throw new CommuneError(
      ErrorCode.ENOFUNDS,
      `hold ${hold.id} has ${formatUnits(hold.remaining)} remaining but these ${fresh.length} payments need ${formatUnits(total)} (fees included)`,
    );
  }
  return { fresh, alreadyPaid: payments.length - fresh.length, fees, total };
}

/** The wire form of a hold. */
export function toHoldReply(hold: HoldState): Hold {
  return {
    holdId: hold.id,
    account: hold.ownerAddress,
    reference: hold.reference,
    amount: formatUnits(hold.amount),
    remaining: formatUnits(hold.remaining),
    posted: formatUnits(hold.posted),
    status: hold.status,
    expiresAt: hold.expiresAt.toISOString(),
  };
}
