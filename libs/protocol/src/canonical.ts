import { keccak256, toUtf8Bytes } from 'ethers';

/**
 * Canonical JSON: object keys sorted by code unit, no whitespace, `undefined` members dropped,
 * as JSON.stringify otherwise. Two parties that agree on a value agree on its bytes, so a
 * signature over them verifies.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    const text = JSON.stringify(value);
    return text === undefined ? 'null' : text;
  }
  if (Array.isArray(value)) return '[' + value.map((item) => canonicalJson(item === undefined ? null : item)).join(',') + ']';
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return canonicalJson((value as { toJSON: () => unknown }).toJSON());
  const keys = Object.keys(value).filter((key) => (value as Record<string, unknown>)[key] !== undefined).sort();
  return '{' + keys.map((key) => JSON.stringify(key) + ':' + canonicalJson((value as Record<string, unknown>)[key])).join(',') + '}';
}

/** keccak256 of the canonical JSON, 0x-prefixed hex. */
export function hashOf(value: unknown): string {
  return keccak256(toUtf8Bytes(typeof value === 'string' ? value : canonicalJson(value)));
}
