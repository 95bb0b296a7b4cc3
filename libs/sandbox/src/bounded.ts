import { ErrorCode, Limits, type SliceError } from '@commune/protocol';
import type { ValueWeight } from './types.js';

/**
 * How deep a value from the sandbox may nest (arrays and objects) and still travel: results,
 * work.emit() values and worker.state go out at depth 3 of their messages (`task:results`
 * outcomes[i].value, `task:events` custom[i].value, the client's results[i].value), and no
 * inbound message may be nested deeper than Limits.maxValueDepth. -> ETOODEEP
 */
export const valueEnvelopeDepth = 3;
export const sandboxValueDepth = Limits.maxValueDepth - valueEnvelopeDepth;

/** Longest error name, message and stack a slice error carries out of the sandbox, characters. */
export const maxErrorNameChars = 200;
export const maxErrorMessageChars = 16 * 1024;
export const maxErrorStackChars = 64 * 1024;

/** Error codes the sandbox runtime itself reports; any other code claimed from inside the sandbox becomes EWORKFUNCTION. */
const runtimeCodes: ReadonlySet<string> = new Set([ErrorCode.EWORKFUNCTION, ErrorCode.ERESULTTOOBIG, ErrorCode.ETOODEEP]);

/**
 * True when the JSON text nests arrays/objects more than `maxDepth` levels. Iterative, one pass
 * over the characters (brackets inside strings do not count). Text shorter than 2 * (maxDepth + 1)
 * cannot be that deep and is not scanned.
 */
export function jsonNestingExceeds(text: string, maxDepth: number = sandboxValueDepth): boolean {
  const length = text.length;
  if (length < 2 * (maxDepth + 1)) return false;
  let depth = 0;
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}

/**
 * UTF-8 bytes of a string: exact for long strings, an upper bound (3 bytes per UTF-16 unit) for
 * short ones, where counting would cost more than it saves.
 */
export function utf8BytesAtMost(text: string): number {
  return text.length <= 1024 ? text.length * 3 : Buffer.byteLength(text, 'utf8');
}

/**
 * What a slice's outcome (or an event) weighs in a message: its UTF-8 bytes (at most) and its
 * values (at most: a JSON text of n characters holds at most (n + 1) / 2 values), plus its envelope.
 */
export type OutcomeSize = ValueWeight;

/** The weight of a JSON text carried in a message, with `overhead` bytes of envelope around it. */
export function jsonSize(text: string, overhead = 96): OutcomeSize {
  return { bytes: utf8BytesAtMost(text) + overhead, nodes: Math.ceil((text.length + 1) / 2) + 8 };
}

/** A string cut to `max` characters, saying so. */
export function cutText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (cut at ${max} characters)`;
}

/**
 * A slice error as the runtime reported it, checked field by field: code, name, message and stack
 * are strings of bounded length whatever the sandbox handed over (a work function can tamper with
 * the runtime's realm), and the code is one the runtime reports.
 */
export function boundedSliceError(raw: unknown): SliceError {
  const fields = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const code = typeof fields.code === 'string' && runtimeCodes.has(fields.code) ? fields.code : ErrorCode.EWORKFUNCTION;
  const name = typeof fields.name === 'string' && fields.name.length > 0 ? cutText(fields.name, maxErrorNameChars) : 'Error';
  const message = typeof fields.message === 'string' ? cutText(fields.message, maxErrorMessageChars) : 'the work function failed';
  const error: SliceError = { code, name, message };
  if (typeof fields.stack === 'string') error.stack = cutText(fields.stack, maxErrorStackChars);
  return error;
}

/** The weight of a slice error in a message. */
export function sliceErrorSize(error: SliceError): OutcomeSize {
  const chars = error.code.length + error.name.length + error.message.length + (error.stack?.length ?? 0);
  // ENOPROGRESS carries its progress reports: a few dozen values.
  return { bytes: chars * 3 + 512, nodes: 64 };
}

/** A value that came out of the sandbox as JSON text, parsed once it passed the limits, or why it did not. */
export type ParsedValue = { ok: true; value: unknown; weight: ValueWeight } | { ok: false; code: string; message: string };

/**
 * Parses a result or work.emit() value that the sandbox handed over as JSON text, after checking
 * that it is a string of at most `maxBytes` UTF-8 bytes (ERESULTTOOBIG) nested at most
 * `maxDepth` levels (ETOODEEP): nothing recurses into a value before it passed both.
 */
export function parseSandboxJson(text: unknown, what: string, maxBytes: number = Limits.maxResultBytes, maxDepth: number = sandboxValueDepth): ParsedValue {
  if (typeof text !== 'string') return { ok: false, code: ErrorCode.EWORKFUNCTION, message: `${what} did not come out of the sandbox as JSON text` };
  if (text.length * 3 > maxBytes && Buffer.byteLength(text, 'utf8') > maxBytes) return { ok: false, code: ErrorCode.ERESULTTOOBIG, message: `${what} is larger than ${maxBytes} bytes` };
  if (jsonNestingExceeds(text, maxDepth)) return { ok: false, code: ErrorCode.ETOODEEP, message: `${what} is nested deeper than ${maxDepth} levels` };
  try {
    return { ok: true, value: JSON.parse(text), weight: jsonSize(text) };
  } catch {
    return { ok: false, code: ErrorCode.EWORKFUNCTION, message: `${what} did not come out of the sandbox as JSON text` };
  }
}
