import { randomBytes } from 'node:crypto';

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';

/**
 * Ids of ledger rows: a type prefix, the time in base 36 (so ids sort roughly by creation and
 * index pages fill in order) and 14 random base-36 characters (~72 bits).
 * `tr_` transfers, `h_` holds.
 */
export function newLedgerId(prefix: 'tr' | 'h', now = Date.now()): string {
  const bytes = randomBytes(14);
  let random = '';
  for (const byte of bytes) random += alphabet[byte % 36];
  return `${prefix}_${now.toString(36).padStart(9, '0')}${random}`;
}

export const HoldIdPattern = /^h_[0-9a-z]{23}$/;
