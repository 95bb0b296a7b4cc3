import { BigNumber } from 'bignumber.js';

/**
 * Amounts in the smallest unit (18 decimals, as the DCC ERC-20 token): integers of up to 78
 * digits, beyond any JS number. All ledger arithmetic goes through this BigNumber flavour, which
 * never switches to exponential notation and never produces fractions.
 */
export const Units = BigNumber.clone({ DECIMAL_PLACES: 0, ROUNDING_MODE: BigNumber.ROUND_DOWN, EXPONENTIAL_AT: 1e9 });
export type Units = InstanceType<typeof Units>;

/** The largest amount a NUMERIC(78,0) column holds. */
export const MAX_UNITS = new Units('9'.repeat(78));
export const ZERO = new Units(0);

/** Parses an integer amount (string from the wire or Postgres NUMERIC). Throws on anything else. */
export function toUnits(value: string | number | bigint | Units): Units {
  const amount = new Units(typeof value === 'bigint' ? value.toString() : value);
  if (!amount.isInteger() || amount.abs().gt(MAX_UNITS)) throw new RangeError(`not an integer amount of at most 78 digits: ${String(value)}`);
  return amount;
}

/** The decimal string of an amount (what UnitsSchema and NUMERIC carry). */
export function formatUnits(amount: Units): string {
  return amount.toFixed(0);
}

export function sumUnits(amounts: Iterable<Units>): Units {
  let total = ZERO;
  for (const amount of amounts) total = total.plus(amount);
  return total;
}
