import BigNumber from 'bignumber.js';
import type { WorkValue } from '@commune/protocol';

/**
 * The price of work from one rate, DCC per CPU-second (MARKET_RATE_DCC_PER_SECOND; the spec's
 * NYI market rate 0.0001465376 DCC): a CPU hour or a GPU hour costs 3600 times it, a megabyte in
 * or out costs it once. No GPU is measured yet, so a GPU hour is priced as a CPU hour.
 */
export function workValueAt(dccPerCpuSecond: string): WorkValue {
  let rate: BigNumber;
  try {
    rate = new BigNumber(dccPerCpuSecond);
  } catch {
    rate = new BigNumber(NaN);
  }
  if (!rate.isFinite() || rate.isNegative()) throw new RangeError(`the market rate must be a non-negative decimal, not ${dccPerCpuSecond}`);
  const hour = rate.times(3600).toFixed();
  return { CPUHour: hour, GPUHour: hour, InputMByte: rate.toFixed(), OutputMByte: rate.toFixed() };
}
