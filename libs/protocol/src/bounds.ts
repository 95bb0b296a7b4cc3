import { CommuneError, ErrorCode } from './errors.js';
import { Limits } from './limits.js';

/** How deep and how large an inbound value may be before anything recurses into it. */
export interface ValueBounds {
  /** Nesting of arrays and objects. -> ETOODEEP */
  maxDepth: number;
  /** Arrays, objects, strings and scalars counted together. -> ETOOBIG */
  maxNodes: number;
  /** Characters of all strings and keys together (UTF-16 code units, a lower bound of the bytes). -> ETOOBIG */
  maxStringChars: number;
}

/** The defaults every inbound message is held to (socket.io messages, REST bodies, what a sandbox hands its host). */
export const defaultValueBounds: ValueBounds = {
  maxDepth: Limits.maxValueDepth,
  maxNodes: Limits.maxValueNodes,
  maxStringChars: Limits.maxMessageBytes,
};

/**
 * Walks `value` without recursion (an explicit stack, so no input can overflow ours) and throws
 * a CommuneError as soon as it passes a bound: ETOODEEP for nesting, ETOOBIG for size. Only
 * plain data is expected (what JSON or socket.io's parser produce); binary buffers count by
 * their byte length. Cycles cannot come off the wire; a cyclic value is refused as too big.
 */
export function assertBounded(value: unknown, bounds: ValueBounds = defaultValueBounds, what = 'message'): void {
  const problem = checkBounds(value, bounds);
  if (problem === null) return;
  if (problem === 'depth') throw new CommuneError(ErrorCode.ETOODEEP, `${what} is nested deeper than ${bounds.maxDepth} levels`);
  if (problem === 'nodes') throw new CommuneError(ErrorCode.ETOOBIG, `${what} has more than ${bounds.maxNodes} values`);
  throw new CommuneError(ErrorCode.ETOOBIG, `${what} holds more than ${bounds.maxStringChars} characters`);
}

/** The bound `value` passes first ('depth' | 'nodes' | 'chars'), or null when it is within all of them. */
export function checkBounds(value: unknown, bounds: ValueBounds = defaultValueBounds): 'depth' | 'nodes' | 'chars' | null {
  const values: unknown[] = [value];
  const depths: number[] = [0];
  let nodes = 0;
  let chars = 0;
  while (values.length > 0) {
    const item = values.pop();
    const depth = depths.pop()!;
    if (++nodes > bounds.maxNodes) return 'nodes';
    if (typeof item === 'string') {
      chars += item.length;
      if (chars > bounds.maxStringChars) return 'chars';
      continue;
    }
    if (item === null || typeof item !== 'object') continue;
    if (ArrayBuffer.isView(item) || item instanceof ArrayBuffer) {
      chars += item.byteLength;
      if (chars > bounds.maxStringChars) return 'chars';
      continue;
    }
    if (depth >= bounds.maxDepth) return 'depth';
    if (Array.isArray(item)) {
      for (let i = 0; i < item.length; i++) {
        values.push(item[i]);
        depths.push(depth + 1);
      }
      if (values.length > bounds.maxNodes) return 'nodes';
      continue;
    }
    for (const key in item) {
      if (!Object.prototype.hasOwnProperty.call(item, key)) continue;
      chars += key.length;
      values.push((item as Record<string, unknown>)[key]);
      depths.push(depth + 1);
    }
    if (chars > bounds.maxStringChars) return 'chars';
    if (values.length > bounds.maxNodes) return 'nodes';
  }
  return null;
}
