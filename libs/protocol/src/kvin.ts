import { decode } from './kvin-decode.js';
import { encode } from './kvin-encode.js';
import { defaultKvinLimits, type KvinLimits } from './kvin-format.js';

export { defaultKvinLimits, type KvinLimits } from './kvin-format.js';

/**
 * KVIN: how a user's value crosses a process (work arguments, input-set items, results,
 * work.emit values, shared state, console arguments), wire-compatible with DCP's `kvin` 9
 * (`KVIN.serialize` / `KVIN.deserialize`) for every kind that travels. docs/values.md lists what
 * travels and what is refused; kvin-format.ts describes the text.
 */

/** The content type of KVIN text (DCP's, for remote data and results). */
export const kvinContentType = 'application/x-kvin';

/** The given limits over the defaults (a limit given as undefined keeps its default). */
function withDefaults(limits: Partial<KvinLimits> | undefined): KvinLimits {
  if (limits === undefined) return defaultKvinLimits;
  return {
    maxBytes: limits.maxBytes ?? defaultKvinLimits.maxBytes,
    maxDepth: limits.maxDepth ?? defaultKvinLimits.maxDepth,
    maxNodes: limits.maxNodes ?? defaultKvinLimits.maxNodes,
    maxBigIntDigits: limits.maxBigIntDigits ?? defaultKvinLimits.maxBigIntDigits,
  };
}

/**
 * The KVIN text of `value`. Throws a CommuneError: EUNSERIALIZABLE for what cannot travel (a
 * function, a symbol, a class instance, a Promise, a WeakMap, an ArrayBuffer, a Set met twice, a
 * property named __proto__), saying where it is; ETOODEEP / ETOOBIG past the limits (the same ones
 * decodeKvin applies, so what encodes within limits decodes within them).
 */
export function encodeKvin(value: unknown, limits?: Partial<KvinLimits>): string {
  return encode(value, withDefaults(limits));
}

/**
 * The value of KVIN text, which may be hostile: bounded by `limits` before and while it is read,
 * never evaluated. Throws only CommuneErrors: EINVAL for malformed text, EUNSERIALIZABLE for a
 * kind that does not travel (a class by name, a function, a symbol, a Promise), ETOOBIG / ETOODEEP.
 */
export function decodeKvin(text: string, limits?: Partial<KvinLimits>): unknown {
  return decode(text, withDefaults(limits));
}
