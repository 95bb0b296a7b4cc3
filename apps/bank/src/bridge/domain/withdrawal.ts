import { randomBytes } from 'node:crypto';
import { CommuneError, ErrorCode, hashOf, type Withdrawal, type WithdrawalRequest } from '@commune/protocol';

/** Public states (WithdrawalSchema): pending (hold taken, no transaction the node accepted yet),
 * sent (a transaction is out), confirmed (paid on chain, final, hold burnt), failed (hold released). */
export type WithdrawalStatus = Withdrawal['status'];

/** A withdrawal as the bridge stores it (bridge_withdrawals). */
export interface WithdrawalRecord {
  /** 0x + 64 hex: the vault's withdrawalId too, so the chain says whether it was paid. */
  withdrawalId: string;
  from: string;
  to: string;
  /** Smallest unit, decimal string. */
  amount: string;
  idempotencyKey: string;
  requestHash: string;
  status: WithdrawalStatus;
  holdId: string | null;
  /** Operator nonce of the signed transaction (every replacement keeps it). */
  nonce: number | null;
  /** Hash of the newest signed transaction, or of the one that paid. */
  txHash: string | null;
  /** The newest signed transaction, kept so it can be broadcast again byte for byte. */
  rawTx: string | null;
  /** The node took one of this withdrawal's transactions into its pool at least once. */
  accepted: boolean;
  /** Broadcasts the node refused (e.g. the operator cannot pay for gas). */
  rejections: number;
  /** Fee-bumped replacements (same nonce) sent because a transaction sat unmined too long. */
  replacements: number;
  /** Broadcasts of the newest transaction after the node first took it (a node may lose its pool). */
  resends: number;
  /** The newest replacement is a cancellation (0 ether to itself): the withdrawal gives up. */
  cancelling: boolean;
  lastBroadcastAt: Date | null;
  /** Block of the vault's Withdrawn event, once seen. */
  blockNumber: number | null;
  /** Newest block when the first transaction was signed: the payment cannot lie before it. */
  signedAtBlock: number | null;
  error: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** A fresh random withdrawal id (bytes32 hex). Random, not derived from the request: a chain that
 * outlives the bank's database can never make a new withdrawal look already paid. */
export function newWithdrawalId(): string {
  return '0x' + randomBytes(32).toString('hex');
}

export const WithdrawalIdPattern = /^0x[0-9a-f]{64}$/;

/** Ledger idempotency keys of the three ledger steps of one withdrawal. */
export const withdrawalKeys = (withdrawalId: string) => ({
  reserve: `withdrawal:${withdrawalId}:reserve`,
  burn: `withdrawal:${withdrawalId}:burn`,
  release: `withdrawal:${withdrawalId}:release`,
});

/** The hold's reference: what the ledger shows the hold is for. */
export const withdrawalReference = (withdrawalId: string): string => `withdrawal:${withdrawalId}`;

/**
 * Expiry of a withdrawal's hold: as late as the ledger allows, so the hold outlives any
 * transaction (the ledger's expiry sweep would give the funds back while tokens may still be paid
 * out). Derived from the stored request's creation time, so every retry of the reservation sends
 * the same request under its idempotency key.
 */
export function withdrawalHoldExpiry(createdAt: Date, maxHoldLifetimeMs: number): number {
  return createdAt.getTime() + maxHoldLifetimeMs - 60_000;
}

/** keccak256 of the canonical request: a retry with the same key must carry the same request. */
export function requestHashOf(request: WithdrawalRequest): string {
  return hashOf(request);
}

/**
 * The idempotency key is the request's nonce: the same signed request again gets the first
 * withdrawal; another request under the key is a replay (EREPLAY), as for signed transfers.
 */
export function assertSameRequest(existing: WithdrawalRecord, requestHash: string): void {
  if (existing.requestHash !== requestHash) {
    throw new CommuneError(ErrorCode.EREPLAY, `idempotency key ${existing.idempotencyKey} of ${existing.from} was used for another withdrawal (${existing.withdrawalId})`);
  }
}

export function toWithdrawalReply(record: WithdrawalRecord): Withdrawal {
  return {
    withdrawalId: record.withdrawalId,
    from: record.from,
    to: record.to,
    amount: record.amount,
    status: record.status,
    // Only a transaction the node took counts as sent; a signed one that never left is not shown.
    txHash: record.status === 'sent' || record.status === 'confirmed' ? record.txHash : null,
  };
}

// ------------------------------------------------------------------ the sender's state machine

/** What the chain says, read once per pass of the sender. */
export interface ChainView {
  latestBlock: number;
  confirmations: number;
  /** The operator's transaction count at `latestBlock`: nonces below it are used. */
  operatorNonceLatest: number;
  /** The operator's transaction count at `latestBlock - confirmations`: nonces below it are used for good. */
  operatorNonceFinal: number;
  now: number;
}

/** What the chain says about one withdrawal. */
export interface WithdrawalView {
  /** The vault's Withdrawn event for this id on the current chain, if any. */
  paid: { txHash: string; blockNumber: number } | null;
  /** The node knows `txHash` (pending or mined). Only asked when it matters. */
  txKnown: boolean;
}

export interface SenderLimits {
  /** Refused broadcasts, and fee-bumped replacements, before the withdrawal gives up. */
  maxSendAttempts: number;
  /** A transaction unmined this long is broadcast again (or replaced with higher fees). */
  resendAfterMs: number;
}

export type WithdrawalStep =
  | { kind: 'done' }
  /** No hold yet (the bank stopped between storing the request and reserving): reserve now. */
  | { kind: 'reserve' }
  /** Paid on chain and final: burn the hold, confirmed. */
  | { kind: 'burn'; txHash: string; blockNumber: number }
  /** Paid on chain, not yet final: remember where, keep waiting. */
  | { kind: 'record-payout'; txHash: string; blockNumber: number }
  /** Nothing signed yet: dry-run the call (a revert fails the withdrawal), sign with the next nonce, broadcast. */
  | { kind: 'sign' }
  /** Broadcast the stored transaction again, byte for byte (same nonce, same hash). */
  | { kind: 'broadcast' }
  /** Replace the stored transaction (same nonce, higher fees): the same call, or a cancellation. */
  | { kind: 'replace'; cancel: boolean }
  /** The withdrawal cannot be paid any more: release the hold, failed. */
  | { kind: 'release'; reason: string }
  | { kind: 'wait'; reason: string };

/**
 * The next thing to do for one open withdrawal. Pure: every decision that moves money is here,
 * unit-tested, and rests on two facts the chain cannot take back once final: whether the vault
 * paid this withdrawal id (it pays an id at most once), and whether the operator's nonce slot of
 * the withdrawal's transaction has been used. A withdrawal fails only when its nonce slot is used
 * for good without the vault having paid it, or when the node refused every broadcast of a
 * transaction it never took.
 */
export function decideWithdrawalStep(record: WithdrawalRecord, chain: ChainView, view: WithdrawalView, limits: SenderLimits): WithdrawalStep {
  if (record.status === 'confirmed' || record.status === 'failed') return { kind: 'done' };
  if (view.paid) {
    const depth = chain.latestBlock - view.paid.blockNumber;
    if (depth >= chain.confirmations) return { kind: 'burn', ...view.paid };
    if (record.txHash !== view.paid.txHash || record.blockNumber !== view.paid.blockNumber || record.status !== 'sent') {
      return { kind: 'record-payout', ...view.paid };
    }
    return { kind: 'wait', reason: `paid in block ${view.paid.blockNumber}, ${depth} of ${chain.confirmations} confirmations` };
  }
  if (record.holdId === null) return { kind: 'reserve' };
  if (record.nonce === null || record.rawTx === null) return { kind: 'sign' };
  if (chain.operatorNonceFinal > record.nonce) {
    return {
      kind: 'release',
      reason: record.cancelling
        ? `cancelled: nonce ${record.nonce} went to the cancellation`
        : `the vault did not pay: the transaction with nonce ${record.nonce} reverted or was replaced`,
    };
  }
  if (chain.operatorNonceLatest > record.nonce) return { kind: 'wait', reason: `nonce ${record.nonce} mined, waiting for ${chain.confirmations} confirmations` };
  // Not mined.
  const accepted = record.accepted || view.txKnown;
  if (!accepted) {
    if (record.rejections >= limits.maxSendAttempts) {
      return { kind: 'release', reason: `the node refused the transaction ${record.rejections} times${record.error ? ` (last: ${record.error})` : ''}` };
    }
    return { kind: 'broadcast' };
  }
  const idleMs = record.lastBroadcastAt === null ? Infinity : chain.now - record.lastBroadcastAt.getTime();
  if (!view.txKnown) {
    // Dropped from the pool, or its block reorganised away: broadcast it again. It was out once, so
    // it may still be mined: only its nonce being used settles it. Refused again, retry slowly.
    if (record.rejections > 0 && idleMs < limits.resendAfterMs) return { kind: 'wait', reason: `nonce ${record.nonce} dropped; the node refused it again` };
    return { kind: 'broadcast' };
  }
  if (idleMs < limits.resendAfterMs) return { kind: 'wait', reason: `nonce ${record.nonce} pending` };
  // Pending too long: first the same bytes again (a node that lost it takes it back, one that has
  // it says so), then a replacement with higher fees.
  if (record.resends === 0) return { kind: 'broadcast' };
  if (record.cancelling) {
    if (record.replacements >= 2 * limits.maxSendAttempts) return { kind: 'wait', reason: `cancellation of nonce ${record.nonce} pending` };
    return { kind: 'replace', cancel: true };
  }
  return { kind: 'replace', cancel: record.replacements >= limits.maxSendAttempts };
}
