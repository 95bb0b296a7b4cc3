import { CommuneError, ErrorCode, type LedgerEntry } from '@commune/protocol';
import { formatUnits, sumUnits, type Units } from './units.js';

export type EntryKind = LedgerEntry['kind'];
export type AccountKind = 'user' | 'fee' | 'bridge' | 'hold';

/** An account as locked inside a ledger transaction. */
export interface AccountState {
  id: string;
  address: string;
  kind: AccountKind;
  balance: Units;
  allowNegative: boolean;
}

/** One side of a transfer: a signed change of one account's balance. */
export interface Leg {
  accountId: string;
  amount: Units;
  kind: EntryKind;
  counterparty: string | null;
  memo: string | null;
}

export interface PlannedEntry extends Leg {
  balanceAfter: Units;
}

export interface Posting {
  entries: PlannedEntry[];
  /** The new balance of every account the transfer touches. */
  balances: Map<string, Units>;
}

/**
 * Plans a double-entry transfer: every leg applied in order to the locked balances. Refuses
 * (ENOFUNDS) when an account that may not go negative would end below zero; a transfer whose
 * legs do not sum to zero is a bug and throws.
 */
export function planPosting(accounts: ReadonlyMap<string, AccountState>, legs: readonly Leg[]): Posting {
  if (legs.length < 2) throw new Error('a transfer needs at least two legs');
  const total = sumUnits(legs.map((leg) => leg.amount));
  if (!total.isZero()) throw new Error(`legs of a transfer must sum to zero, not ${formatUnits(total)}`);
  const balances = new Map<string, Units>();
  const entries: PlannedEntry[] = [];
  for (const leg of legs) {
    const account = accounts.get(leg.accountId);
    if (!account) throw new Error(`account ${leg.accountId} was not locked`);
    const balanceAfter = (balances.get(leg.accountId) ?? account.balance).plus(leg.amount);
    balances.set(leg.accountId, balanceAfter);
    entries.push({ ...leg, balanceAfter });
  }
  for (const [accountId, balance] of balances) {
    const account = accounts.get(accountId)!;
    if (balance.isNegative() && !account.allowNegative) {
      const needed = account.balance.minus(balance);
      throw new CommuneError(
        ErrorCode.ENOFUNDS,
        `${describeAccount(account)} has ${formatUnits(account.balance)} available but this needs ${formatUnits(needed)}`,
      );
    }
  }
  return { entries, balances };
}

/** A two-leg transfer of `amount` from one account to another. */
export function simpleLegs(
  from: Pick<AccountState, 'id' | 'address'>,
  to: Pick<AccountState, 'id' | 'address'>,
  amount: Units,
  kind: EntryKind,
  memo: string | null,
): Leg[] {
  return [
    { accountId: from.id, amount: amount.negated(), kind, counterparty: to.address, memo },
    { accountId: to.id, amount, kind, counterparty: from.address, memo },
  ];
}

function describeAccount(account: AccountState): string {
  return account.kind === 'hold' ? `hold ${account.address.slice('hold:'.length)}` : `account ${account.address}`;
}
