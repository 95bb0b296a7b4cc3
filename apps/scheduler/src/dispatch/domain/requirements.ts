/**
 * spec "Requirements Objects": does a worker's capabilities object meet a job's requirements?
 * Matched path by path: a `true` leaf needs the capability present (truthy), a `false` leaf needs
 * it absent (falsy), a nested plain object is matched recursively, and any other leaf (string,
 * number, array, null) must equal the capability (JSON equality). Pure; no I/O.
 */
export function meetsRequirements(requirements: unknown, capabilities: unknown): boolean {
  if (!isPlainObject(requirements)) return true;
  const have = isPlainObject(capabilities) ? capabilities : {};
  for (const [key, wanted] of Object.entries(requirements)) {
    const actual = Object.prototype.hasOwnProperty.call(have, key) ? have[key] : undefined;
    if (wanted === true) {
      if (!actual) return false;
    } else if (wanted === false) {
      if (actual) return false;
    } else if (isPlainObject(wanted)) {
      if (!meetsRequirements(wanted, actual)) return false;
    } else if (wanted !== undefined && JSON.stringify(wanted) !== JSON.stringify(actual)) {
      return false;
    }
  }
  return true;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
