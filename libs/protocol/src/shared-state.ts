import { z } from 'zod';
import { CommuneError, ErrorCode } from './errors.js';
import { Limits } from './limits.js';

/**
 * Shared state (spec "Shared State", "Synchronization"): `job.state` in the client and
 * `worker.state` in sandboxes, arbitrated by the scheduler (by the client itself in localExec).
 *
 * The state is a plain object of JSON data. Because the spec's own example starts from
 * `job.state.best = Infinity`, numbers keep Infinity, -Infinity and NaN: on the wire and in
 * storage a state is *state text*, JSON in which those three may appear as bare tokens (as JS
 * source would write them). Everything else follows JSON.stringify (toJSON, undefined and
 * functions dropped from objects, null in arrays).
 *
 * The operations are defined here once, as pure functions with JS's own operators; the
 * scheduler's Redis Lua scripts implement the same rules and are tested against these.
 * Deliberate limit: the compared (or incremented) property must hold a JSON primitive or be
 * absent; an object or array there is EINVAL (JS would compare their string forms).
 */

export type StateObject = Record<string, unknown>;

export const StateConditionSchema = z.enum(['max', 'min', '<', '>', '<=', '>=', '==', '!=']);
export type StateCondition = z.infer<typeof StateConditionSchema>;

/** A property name a condition or increment refers to. */
export const StatePropertySchema = z.string().min(1).max(1000);

/** State text (see above), at most Limits.maxStateBytes. */
export const StateTextSchema = z
  .string()
  .refine((text) => stateBytes(text) <= Limits.maxStateBytes, `the state is larger than ${Limits.maxStateBytes} bytes`)
  .refine((text) => {
    try {
      const value = decodeState(text);
      return value !== null && typeof value === 'object' && !Array.isArray(value);
    } catch {
      return false;
    }
  }, 'not the state text of an object');

/**
 * One operation. `set` with `test` is testAndSet. `condition` and `property` come together:
 * without them the object is replaced unconditionally.
 */
export const StateOperationSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('set'),
      test: z.boolean().default(false),
      condition: StateConditionSchema.optional(),
      property: StatePropertySchema.optional(),
      state: StateTextSchema,
    })
    .refine((op) => (op.condition === undefined) === (op.property === undefined), 'a condition needs a property, and a property a condition'),
  z.object({ kind: z.literal('increment'), property: StatePropertySchema, by: z.number().finite() }),
]);
export type StateOperation = z.infer<typeof StateOperationSchema>;
export type StateOperationInput = z.input<typeof StateOperationSchema>;

/** The arbiter's state of a job: `version` grows by one with each change (0: the initial state). */
export const StateSnapshotSchema = z.object({ version: z.number().int().nonnegative(), state: StateTextSchema });
export type StateSnapshot = z.infer<typeof StateSnapshotSchema>;

const ErrorReply = z.object({ ok: z.literal(false), code: z.string(), message: z.string() });

/**
 * The answer to an operation: whether the object was replaced (increment: always), the state and
 * version after it, and for a testAndSet that replaced, `previous`: the state before.
 */
export const StateOperationReplySchema = z.union([
  z.object({ ok: z.literal(true), replaced: z.boolean(), version: z.number().int().nonnegative(), state: StateTextSchema, previous: StateTextSchema.optional() }),
  ErrorReply,
]);
export type StateOperationReply = z.infer<typeof StateOperationReplySchema>;

export const StateSnapshotReplySchema = z.union([StateSnapshotSchema.extend({ ok: z.literal(true) }), ErrorReply]);
export type StateSnapshotReply = z.infer<typeof StateSnapshotReplySchema>;

const JobId = z.string().regex(/^j_[0-9a-z]{10,40}$/, 'not a job id');

/** Worker -> scheduler `state:op`: allowed while the worker holds a task of the job. */
export const WorkerStateOperationSchema = z.object({ jobId: JobId, operation: StateOperationSchema });
export type WorkerStateOperation = z.infer<typeof WorkerStateOperationSchema>;

/** `state:subscribe` / `state:unsubscribe` / `state:get`: a job's state change events (and its current state). */
export const StateSubscriptionSchema = z.object({ jobId: JobId });

/** Client -> scheduler `state:op`: signed by the job's owner over {jobId, operation, nonce, expiresAt}. */
export const ClientStateOperationSchema = z.object({
  jobId: JobId,
  operation: StateOperationSchema,
  nonce: z.string().min(8).max(100),
  expiresAt: z.number().int(),
});
export type ClientStateOperation = z.infer<typeof ClientStateOperationSchema>;
export const ClientStateOperationRequestSchema = z.object({ request: ClientStateOperationSchema, signature: z.string().regex(/^0x[0-9a-fA-F]+$/) });
export type ClientStateOperationRequest = z.infer<typeof ClientStateOperationRequestSchema>;

/** Scheduler -> listening clients and workers: the job's state changed. */
export const StateChangeEventSchema = z.object({ jobId: JobId, version: z.number().int().nonnegative(), state: StateTextSchema });
export type StateChangeEvent = z.infer<typeof StateChangeEventSchema>;

// ---------------------------------------------------------------- state text

const nonFiniteTokens = ['-Infinity', 'Infinity', 'NaN'] as const;
const markerPrefix = `\u0001commune-state-${Math.random().toString(36).slice(2)}:`;

/** The state text of a value (JSON.stringify rules, keeping non-finite numbers). EINVAL for what JSON cannot hold (bigints, cycles). */
export function encodeState(value: unknown): string {
  let text: string | undefined;
  let marked = false;
  try {
    text = JSON.stringify(value, (_key, item: unknown) => {
      if (typeof item === 'number' && !Number.isFinite(item)) {
        marked = true;
        return markerPrefix + String(item);
      }
      return item;
    });
  } catch (error) {
    throw new CommuneError(ErrorCode.EINVAL, `the state is not JSON: ${(error as Error).message}`);
  }
  if (text === undefined) throw new CommuneError(ErrorCode.EINVAL, 'the state is not JSON');
  if (!marked) return text;
  const quotedPrefix = JSON.stringify(markerPrefix).slice(0, -1);
  for (const token of nonFiniteTokens) text = text.split(`${quotedPrefix}${token}"`).join(token);
  return text;
}

/** Parses state text (strict JSON plus bare Infinity, -Infinity and NaN outside strings). */
export function decodeState(text: string): unknown {
  let out = '';
  let last = 0;
  let marked = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      continue;
    }
    if (c === 0x49 /* I */ || c === 0x4e /* N */ || c === 0x2d /* - */) {
      const token = nonFiniteTokens.find((candidate) => text.startsWith(candidate, i));
      if (token !== undefined) {
        out += text.slice(last, i) + JSON.stringify(markerPrefix + token);
        i += token.length - 1;
        last = i + 1;
        marked = true;
      }
    }
  }
  if (!marked) return JSON.parse(text);
  out += text.slice(last);
  return JSON.parse(out, (_key, item: unknown) => (typeof item === 'string' && item.startsWith(markerPrefix) ? Number(item.slice(markerPrefix.length)) : item));
}

/** UTF-8 bytes of state text (what Limits.maxStateBytes counts). */
export function stateBytes(text: string): number {
  return new TextEncoder().encode(text).length;
}

/** The plain-data copy of an object that set() sends: what encodeState keeps, as an object. */
export function stateObjectOf(value: unknown): StateObject {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CommuneError(ErrorCode.EINVAL, 'the state must be an object');
  return decodeState(encodeState(value)) as StateObject;
}

// ---------------------------------------------------------------- the operations

export interface StateOutcome {
  replaced: boolean;
  /** The state after the operation (the same object as `current` when not replaced). */
  state: StateObject;
  /** The state before, when replaced. */
  previous?: StateObject;
}

type Primitive = string | number | boolean | null | undefined;

function comparable(value: unknown, which: string, property: string): Primitive {
  if (value !== null && typeof value === 'object') {
    throw new CommuneError(ErrorCode.EINVAL, `${which} value of "${property}" is an object or array; conditions and increments need a number, string, boolean or null`);
  }
  return value as Primitive;
}

/** `incoming <op> stored`, with JS's operators (max is >, min is <). */
export function compareStateValues(condition: StateCondition, incoming: unknown, stored: unknown, property = '?'): boolean {
  // The spec's == and != are JS's loose operators.
  const a = comparable(incoming, 'the new', property) as number;
  const b = comparable(stored, 'the stored', property) as number;
  switch (condition) {
    case 'max':
    case '>':
      return a > b;
    case 'min':
    case '<':
      return a < b;
    case '<=':
      return a <= b;
    case '>=':
      return a >= b;
    case '==':
      return a == b;
    case '!=':
      return a != b;
  }
}

function own(object: StateObject, property: string): unknown {
  return Object.prototype.hasOwnProperty.call(object, property) ? object[property] : undefined;
}

function checkSize(state: StateObject, maxBytes: number): void {
  const bytes = stateBytes(encodeState(state));
  if (bytes > maxBytes) throw new CommuneError(ErrorCode.ESTATETOOBIG, `the state would be ${bytes} bytes; the limit is ${maxBytes}`);
}

/**
 * Applies one operation to `current` (not modified): the arbiter's whole job. Throws EINVAL for
 * an object or array where a condition or increment needs a primitive, ESTATETOOBIG when the
 * result would be larger than `maxBytes` (state text, UTF-8).
 */
export function applyStateOperation(current: StateObject, operation: StateOperation, maxBytes: number = Limits.maxStateBytes): StateOutcome {
  if (operation.kind === 'increment') {
    const { property, by } = operation;
    const stored = comparable(own(current, property), 'the stored', property) as number;
    const next: StateObject = { ...current };
    let value = stored;
    value += by; // the spec: "with the += operator" (undefined += 1 is NaN, "a" += 1 is "a1")
    Object.defineProperty(next, property, { value, enumerable: true, writable: true, configurable: true });
    checkSize(next, maxBytes);
    return { replaced: true, state: next, previous: current };
  }
  const incoming = decodeState(operation.state) as StateObject;
  checkSize(incoming, maxBytes);
  if (operation.condition !== undefined && operation.property !== undefined) {
    const property = operation.property;
    if (!compareStateValues(operation.condition, own(incoming, property), own(current, property), property)) return { replaced: false, state: current };
  }
  return { replaced: true, state: incoming, previous: current };
}

/**
 * The in-memory arbiter (localExec): one job's state and version, changed only through
 * applyStateOperation, answering as the scheduler does.
 */
export class LocalStateArbiter {
  #state: StateObject;
  #version = 0;

  constructor(initial: StateObject = {}, private readonly maxBytes: number = Limits.maxStateBytes) {
    this.#state = stateObjectOf(initial);
  }

  get snapshot(): StateSnapshot {
    return { version: this.#version, state: encodeState(this.#state) };
  }

  apply(operation: StateOperation): Extract<StateOperationReply, { ok: true }> {
    const outcome = applyStateOperation(this.#state, operation, this.maxBytes);
    if (outcome.replaced) {
      this.#state = outcome.state;
      this.#version++;
    }
    const reply: Extract<StateOperationReply, { ok: true }> = { ok: true, replaced: outcome.replaced, version: this.#version, state: encodeState(this.#state) };
    if (operation.kind === 'set' && operation.test && outcome.replaced && outcome.previous) reply.previous = encodeState(outcome.previous);
    return reply;
  }
}
