import { randomFillSync } from 'node:crypto';

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * Ids of ledger rows: a type prefix, the time in base 36 (so ids sort roughly by creation and
 * index pages fill in order) and 14 random base-36 characters (~72 bits).
 * `tr_` transfers, `h_` holds.
 */
export function newLedgerId(prefix: 'tr' | 'h', now = Date.now()): string {
  if (poolOffset + 14 > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  let random = '';
  for (let i = poolOffset; i < poolOffset + 14; i++) random += alphabet[pool[i]! % 36];
  poolOffset += 14;
  return `${prefix}_${now.toString(36).padStart(9, '0')}${random}`;
}

/** Random bytes for ids, drawn from the CSPRNG 4 KiB at a time (one call per ~290 ids instead of one each); each byte is used once. */
const pool = Buffer.alloc(14 * 292);
let poolOffset = pool.length;

export const HoldIdPattern = /^h_[0-9a-z]{23}$/;
