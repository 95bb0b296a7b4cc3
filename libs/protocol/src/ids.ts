import { randomBytes } from 'node:crypto';

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';

/** A random lowercase base-36 id with a type prefix: `j_` jobs, `t_` tasks, `w_` workers. */
export function newId(prefix: 'j' | 't' | 'w' | 'n', length = 20): string {
  const bytes = randomBytes(length);
  let text = '';
  for (let i = 0; i < length; i++) text += alphabet[bytes[i]! % 36];
  return `${prefix}_${text}`;
}
