import BigNumber from 'bignumber.js';
import { CommuneError, DCC_DECIMALS, ErrorCode, type WorkValueQuote } from '@commune/protocol';

/**
 * DCC amounts in the SDK: users give and get DCC as decimal strings (or numbers, BigNumbers,
 * bigints); the scheduler's job spec takes an offer as a DCC decimal string, and the bank and
 * the scheduler's job actions count integers in the smallest unit (18 decimals, as the ERC-20
 * token). Everything here is exact (bignumber.js), never floating point.
 */

/** Our own constructor: a program's BigNumber.config() must not change amounts. */
const Big = BigNumber.clone({ DECIMAL_PLACES: 40 });
const unitsPerDcc = new Big(10).pow(DCC_DECIMALS);

/** Integer smallest units (a decimal string, may be signed) as a DCC decimal string: '1500000000000000000' → '1.5'. */
export function unitsToDcc(units: string | bigint): string {
  const value = new Big(String(units));
  if (!value.isInteger()) throw new CommuneError(ErrorCode.EINVAL, `${String(units)} is not an integer amount in the smallest unit`);
  return value.div(unitsPerDcc).toFixed();
}

/** A DCC decimal string as integer smallest units: '1.5' → '1500000000000000000'. */
export function dccStringToUnits(dcc: string): string {
  return new Big(dcc).times(unitsPerDcc).toFixed(0);
}

function isBigNumberLike(value: unknown): boolean {
  // bignumber.js instances of any copy or clone; other big-number libraries print their decimal value.
  return BigNumber.isBigNumber(value) || (typeof value === 'object' && value !== null && typeof (value as { toFixed?: unknown }).toFixed === 'function');
}

/**
 * A DCC amount given by a user as a DCC decimal string with at most 18 decimals. Takes numbers,
 * Number objects, bigints, decimal strings and BigNumbers (spec: "literal numbers, instances of
 * Number, and BigNums"). Strings, bigints and BigNumbers are exact, and more than 18 decimals is
 * EINVAL. A JS number is a binary approximation, so it is taken at its shortest decimal form and
 * cut (rounded down) to 18 decimals: `0.1 * 3` is 0.30000000000000004, and 1.0001 times a
 * calculateSlicePayment() result easily has 20 decimals; a positive number below 10^-18 is EINVAL
 * rather than silently free. Negative, NaN and infinite amounts are EINVAL.
 */
export function toDcc(what: string, amount: unknown): string {
  let value: BigNumber;
  const isNumber = typeof amount === 'number' || amount instanceof Number;
  try {
    if (isNumber) value = new Big(amount.valueOf());
    else if (typeof amount === 'string' || amount instanceof String) value = new Big(amount.valueOf().trim() === '' ? NaN : amount.valueOf().trim());
    else if (typeof amount === 'bigint') value = new Big(amount.toString());
    else if (BigNumber.isBigNumber(amount)) value = new Big((amount as BigNumber).toFixed());
    else if (isBigNumberLike(amount)) value = new Big(String(amount));
    else value = new Big(NaN);
  } catch {
    value = new Big(NaN); // bignumber.js throws on some malformed strings
  }
  if (!value.isFinite() || value.isNegative()) {
    throw new CommuneError(ErrorCode.EINVAL, `${what} must be a non-negative number of DCC, not ${describe(amount)}`);
  }
  if ((value.decimalPlaces() ?? 0) > DCC_DECIMALS) {
    if (!isNumber) throw new CommuneError(ErrorCode.EINVAL, `${what} has more than ${DCC_DECIMALS} decimals (${value.toFixed()}); DCC has ${DCC_DECIMALS}`);
    const cut = value.decimalPlaces(DCC_DECIMALS, BigNumber.ROUND_DOWN);
    if (cut.isZero()) throw new CommuneError(ErrorCode.EINVAL, `${what} of ${describe(amount)} DCC is less than the smallest unit (10^-${DCC_DECIMALS} DCC)`);
    value = cut;
  }
  return value.toFixed();
}

/** A DCC amount given by a user, as integer smallest units (see toDcc). */
export function toUnits(what: string, amount: unknown): string {
  return dccStringToUnits(toDcc(what, amount));
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    return String(value);
  } catch {
    return typeof value;
  }
}

// ------------------------------------------------------------------ slice payment offers

/** Marks SlicePaymentDescriptors made by compute.marketValue / compute.marketRate. */
export const marketValueMarker = Symbol.for('@commune/client.marketValue');

/** What a slice payment offer asks for: a fixed DCC amount, or the market rate times `ratio`, at most `max`. */
export type ParsedOffer =
  | { kind: 'fixed'; dcc: string }
  | { kind: 'market'; ratio: string; max: string | undefined };

/**
 * spec "SlicePaymentDescriptor Objects": a number (number, Number, bigint, BigNumber, decimal
 * string), `{offerPerSlice}` with such a number, or a descriptor of compute.marketValue /
 * compute.marketRate (as a property or called). Undefined and null are free (0). EINVAL for
 * anything else.
 */
export function parseSlicePaymentOffer(offer: unknown): ParsedOffer {
  if (offer === undefined || offer === null) return { kind: 'fixed', dcc: '0' };
  if ((typeof offer === 'object' || typeof offer === 'function') && (offer as Record<symbol, unknown>)[marketValueMarker]) {
    const descriptor = offer as { marketValue?: boolean; ratio?: unknown; max?: unknown; factor?: unknown };
    const ratio = toDcc(descriptor.marketValue ? 'marketValue(ratio)' : 'marketRate(factor)', (descriptor.marketValue ? descriptor.ratio : descriptor.factor) ?? 1);
    const max = descriptor.max === undefined || descriptor.max === null ? undefined : toDcc('marketValue(ratio, max)', descriptor.max);
    return { kind: 'market', ratio, max };
  }
  let amount: unknown = offer;
  if (typeof offer === 'object' && !isBigNumberLike(offer) && !(offer instanceof Number) && !(offer instanceof String)) {
    if (!('offerPerSlice' in offer)) throw new CommuneError(ErrorCode.EINVAL, 'a slice payment offer is a number, {offerPerSlice}, compute.marketValue or compute.marketRate');
    amount = (offer as { offerPerSlice: unknown }).offerPerSlice;
  }
  return { kind: 'fixed', dcc: toDcc('a slice payment offer', amount) };
}

/**
 * The market rate per slice, in DCC, from the scheduler's signed quote: the value of one second
 * of a reference core (CPUHour / 3600), which is the scheduler's MARKET_RATE_DCC_PER_SECOND, by
 * default the spec's NYI market rate of 0.0001465376 DCC.
 */
export function marketRateOf(quote: Pick<WorkValueQuote, 'CPUHour'>): string {
  return new Big(quote.CPUHour).div(3600).decimalPlaces(DCC_DECIMALS, BigNumber.ROUND_DOWN).toFixed();
}

/** A market offer at `rateDcc` per slice: rate × ratio, at most max, cut to 18 decimals. */
export function marketOffer(terms: { ratio: string; max: string | undefined }, rateDcc: string): string {
  let offer = new Big(rateDcc).times(terms.ratio);
  if (terms.max !== undefined) offer = Big.min(offer, terms.max);
  const cut = offer.decimalPlaces(DCC_DECIMALS, BigNumber.ROUND_DOWN);
  if (cut.isZero() && !new Big(terms.ratio).isZero() && (terms.max === undefined || !new Big(terms.max).isZero())) {
    throw new CommuneError(ErrorCode.EINVAL, `the market offer (${rateDcc} DCC × ${terms.ratio}) is less than the smallest unit (10^-${DCC_DECIMALS} DCC)`);
  }
  return cut.toFixed();
}

/** Same DCC amount? (decimal strings) */
export function sameDcc(a: string, b: string): boolean {
  return new Big(a).eq(b);
}
