import type { Hold } from '@commune/protocol';

/**
 * What the bridge needs of the ledger (LedgerService, apps/bank/src/ledger): each call happens at
 * most once per idempotency key, and a retry gets the first outcome.
 */
export interface BridgeLedger {
  /** Credits `to` from the bridge account: a deposit. */
  mint(input: { idempotencyKey: string; to: string; amount: string; memo: string }): Promise<{ transferId: string; created: boolean }>;
  /** Holds `amount` of `account` (ENOFUNDS when not covered) until `expiresAt` (epoch ms). */
  reserve(input: { idempotencyKey: string; account: string; amount: string; reference: string; expiresAt?: number }): Promise<Hold>;
  /** Posts the whole hold to the bridge account: a withdrawal paid on chain. */
  burn(input: { idempotencyKey: string; holdId: string }): Promise<{ transferId: string }>;
  /** Gives the hold back to its account: a withdrawal that failed. */
  releaseHold(input: { idempotencyKey: string; holdId: string }): Promise<Hold>;
}

export const BRIDGE_LEDGER = Symbol('BRIDGE_LEDGER');
