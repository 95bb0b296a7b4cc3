import BigNumber from 'bignumber.js';
import { CommuneError, ErrorCode, SignedKind, verifySignedRequest, WorkValueQuoteSchema, type SliceProfile, type WorkValue, type WorkValueQuote } from '@commune/protocol';
import type { SchedulerLink } from './connection.js';

/** Our own constructor: a program's BigNumber.config() must not change prices. */
const Big = BigNumber.clone({ DECIMAL_PLACES: 40 });

function amountOf(name: string, value: unknown): BigNumber {
  let amount: BigNumber;
  try {
    amount = typeof value === 'number' || typeof value === 'string' || BigNumber.isBigNumber(value) ? new Big(value as BigNumber.Value) : new Big(NaN);
  } catch {
    amount = new Big(NaN); // bignumber.js throws on some malformed strings
  }
  if (!amount.isFinite() || amount.isNegative()) throw new CommuneError(ErrorCode.EINVAL, `${name} must be a non-negative number, not ${String(value)}`);
  return amount;
}

/**
 * spec compute.calculateSlicePayment(sliceProfile, workValue): what a slice with that profile
 * costs at those rates, in DCC (no job overhead): cpuHours·CPUHour + gpuHours·GPUHour +
 * inputMBytes·InputMByte + outputMBytes·OutputMByte.
 */
export function calculateSlicePayment(sliceProfile: Partial<SliceProfile>, workValue: Partial<Record<keyof WorkValue, BigNumber.Value>>): number {
  if (typeof sliceProfile !== 'object' || sliceProfile === null) throw new CommuneError(ErrorCode.EINVAL, 'calculateSlicePayment needs a SliceProfile {cpuHours, gpuHours, inputMBytes, outputMBytes}');
  if (typeof workValue !== 'object' || workValue === null) throw new CommuneError(ErrorCode.EINVAL, 'calculateSlicePayment needs a WorkValue {CPUHour, GPUHour, InputMByte, OutputMByte}');
  const terms: Array<[keyof SliceProfile, keyof WorkValue]> = [
    ['cpuHours', 'CPUHour'],
    ['gpuHours', 'GPUHour'],
    ['inputMBytes', 'InputMByte'],
    ['outputMBytes', 'OutputMByte'],
  ];
  let total = new Big(0);
  for (const [use, price] of terms) {
    total = total.plus(amountOf(`sliceProfile.${use}`, sliceProfile[use] ?? 0).times(amountOf(`workValue.${price}`, workValue[price] ?? 0)));
  }
  return total.toNumber();
}

/**
 * spec compute.getMarketValue(): the scheduler's signed WorkValueQuote (kind market-quote),
 * checked here through protocol verifySignedRequest: a quote whose signature is not its signer's
 * is refused (EBADSIGNATURE), an expired one too (EEXPIRED).
 */
export async function getMarketValue(link: SchedulerLink): Promise<WorkValueQuote> {
  const parsed = WorkValueQuoteSchema.safeParse(await link.rest('GET', 'market/value'));
  if (!parsed.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed market value quote: ${parsed.error.message}`);
  const { signature, ...quote } = parsed.data;
  await verifySignedRequest(
    { kind: SignedKind.marketQuote, payload: quote, signature, signer: quote.signer, expiresAt: quote.quoteExpiry },
    // A scheduler may quote for longer than the default lifetime (QUOTE_LIFETIME_MS): any future expiry is a firm quote.
    { now: Date.now(), maxLifetimeMs: Number.MAX_SAFE_INTEGER },
  );
  return parsed.data;
}
