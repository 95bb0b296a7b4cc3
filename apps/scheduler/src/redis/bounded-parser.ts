import { createRequire } from 'node:module';
import { Limits } from '@commune/protocol';

/**
 * How a socket.io packet's JSON text is bounded before anything parses it.
 *
 * - `maxNodes`: values (arrays, objects, strings, numbers, literals; object keys do not count) in
 *   the packet's data. The data is `[event, payload, ...]`, so this is Limits.maxValueNodes plus
 *   room for the array, the event name and the three values of each binary placeholder.
 * - `maxDepth`: nesting of arrays and objects in the packet's data. A container deeper than this
 *   is cut (replaced by `[]` at that depth) before JSON.parse, so nothing deeper is ever built,
 *   yet every depth check a handler applies still fails as it would have (see boundedPacketBounds).
 * - `maxAttachments`: binary attachments a packet may announce (socket.io-parser's own default).
 *   A binary packet nested deeper than maxDepth is refused, not cut (see scanPacket).
 */
export interface PacketBounds {
  maxDepth: number;
  maxNodes: number;
  maxAttachments: number;
}

/**
 * Handlers check a payload's depth from the payload (packet level 2) or from a value inside it
 * (a result or an event value at payload depth 3, packet level 5); they refuse anything nested
 * Limits.maxValueDepth levels below. Cutting at maxValueDepth + 16 packet levels leaves every
 * message that passes those checks untouched, and leaves a container at a depth each of those
 * checks still refuses (ETOODEEP, or a result failed with ETOODEEP) in every message that does not.
 */
export const boundedPacketBounds: PacketBounds = {
  maxDepth: Limits.maxValueDepth + 16,
  maxAttachments: 10,
  maxNodes: Limits.maxValueNodes + 64,
};

export type PacketRefusal = 'nodes' | 'depth' | 'attachments' | 'malformed';

export type PacketScan =
  | { ok: true; text: string; cut: number }
  | { ok: false; reason: PacketRefusal; message: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** What a UTF-16 unit is to the scan outside strings (anything not listed is part of a scalar). */
const OTHER = 0;
const STRING = 1;
const OPEN = 2;
const CLOSE = 3;
const COMMA = 4;
const kinds = new Uint8Array(65536);
kinds[QUOTE] = STRING;
kinds[0x5b] = OPEN; // [
kinds[0x7b] = OPEN; // {
kinds[0x5d] = CLOSE; // ]
kinds[0x7d] = CLOSE; // }
kinds[0x2c] = COMMA;
/** JSON's whitespace (the only characters allowed between an empty container's brackets). */
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * The index of the quote that closes the string opened at `open`, or -1 when it is never closed.
 * Short strings (keys, small values) are walked here; past 32 characters indexOf finds the next
 * quote, which is escaped when an odd number of backslashes precede it (the backward count stops
 * at the string's start, so the whole scan stays linear).
 */
function stringEnd(text: string, open: number): number {
  const length = text.length;
  const inline = Math.min(length, open + 33);
  let at = open + 1;
  for (; at < inline; at++) {
    const c = text.charCodeAt(at);
    if (c === QUOTE) return at;
    if (c === BACKSLASH) at++;
  }
  if (at >= length) return -1;
  // `at` is not inside an escape here: continue from it with indexOf.
  const from = at;
  at--;
  for (;;) {
    at = text.indexOf('"', at + 1);
    if (at < 0) return -1;
    let backslashes = 0;
    for (let k = at - 1; k >= from && text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
    if ((backslashes & 1) === 0) return at;
  }
}

/**
 * Where the JSON data of an encoded socket.io packet starts, following socket.io-parser's
 * Decoder.decodeString header rules exactly (type, `<attachments>-` of binary packets, `/nsp,`,
 * ack id), so that this scan and JSON.parse read the same text. -1: no data.
 */
function packetHeader(str: string): { dataStart: number; attachments: number; type: number } {
  let i = 0;
  const type = Number(str.charAt(0));
  let attachments = 0;
  if (type === 5 || type === 6) {
    const start = i + 1;
    while (str.charAt(++i) !== '-' && i != str.length) { /* socket.io-parser's loop */ }
    attachments = Number(str.substring(start, i));
  }
  if (str.charAt(i + 1) === '/') {
    while (++i) {
      const c = str.charAt(i);
      if (c === ',') break;
      if (i === str.length) break;
    }
  }
  const next = str.charAt(i + 1);
  if (next !== '' && Number(next) == (next as unknown as number)) {
    while (++i) {
      const c = str.charAt(i);
      if (c == null || Number(c) != (c as unknown as number)) {
        --i;
        break;
      }
      if (i === str.length) break;
    }
  }
  ++i;
  return { dataStart: i < str.length ? i : -1, attachments, type };
}

/**
 * One linear pass over an encoded socket.io packet (text), before JSON.parse: counts the values
 * of its data and how deep arrays and objects nest (string contents and escapes skipped), refuses
 * a packet over `maxNodes` values, announcing more than `maxAttachments` attachments, a binary
 * packet nested deeper than `maxDepth`, or one whose brackets or strings do not close (JSON.parse
 * would refuse it too, after doing the work), and cuts containers deeper than `maxDepth` in other
 * packets (each replaced by `[]`), counting them in `cut`.
 * Values inside a cut container are neither counted nor parsed. Never throws.
 *
 * Values are counted without tokenizing them: every value but the first follows an opening
 * bracket (the first of a non-empty container) or a comma (the next element or entry; object keys
 * are not values), so values = 1 + commas + non-empty containers, exactly for JSON text and at
 * most that for the part of any other text JSON.parse would read before refusing it.
 */
export function scanPacket(packet: string, bounds: PacketBounds = boundedPacketBounds): PacketScan {
  const header = packetHeader(packet);
  if ((header.type === 5 || header.type === 6) && header.attachments > bounds.maxAttachments) {
    return { ok: false, reason: 'attachments', message: `a binary packet announcing ${header.attachments} attachments (at most ${bounds.maxAttachments})` };
  }
  const start = header.dataStart;
  const length = packet.length;
  // Each value takes at least one character and nesting two per level: short packets are within bounds.
  if (start < 0 || (length - start < 2 * (bounds.maxDepth + 1) && length - start < bounds.maxNodes)) return { ok: true, text: packet, cut: 0 };

  const maxDepth = bounds.maxDepth;
  const maxNodes = bounds.maxNodes;
  const binary = header.type === 5 || header.type === 6;
  const tooMany = (): PacketScan => ({ ok: false, reason: 'nodes', message: `a packet of more than ${maxNodes} values` });
  const unterminated: PacketScan = { ok: false, reason: 'malformed', message: 'a packet with an unterminated string' };
  let depth = 0;
  /** Commas and opening brackets seen: an upper bound of the values, corrected for empty containers. */
  let nodes = 1;
  let lastOpen = -1;
  let cut = 0;
  let pieces: string[] | null = null;
  let copiedTo = start;

  for (let i = start; i < length; i++) {
    const c = packet.charCodeAt(i);
    const kind = kinds[c]!;
    if (kind === OTHER) continue;
    if (kind === STRING) {
      // Most strings are short (keys, ids): walk them here; a long one goes to stringEnd (indexOf).
      const open = i;
      const inline = open + 33 < length ? open + 33 : length;
      for (i++; i < inline; i++) {
        const d = packet.charCodeAt(i);
        if (d === QUOTE) break;
        if (d === BACKSLASH) i++;
      }
      if (i < inline && packet.charCodeAt(i) === QUOTE) continue;
      const end = stringEnd(packet, open);
      if (end < 0) return unterminated;
      i = end;
    } else if (kind === COMMA) {
      if (++nodes > maxNodes) return tooMany();
    } else if (kind === OPEN) {
      if (depth === maxDepth) {
        // socket.io-parser rebuilds a binary packet's placeholders by recursion over all of its data:
        // no client of the scheduler sends binary packets, so a deep one is refused rather than cut.
        if (binary) return { ok: false, reason: 'depth', message: `a binary packet nested deeper than ${maxDepth} levels` };
        // Too deep: find where this container closes (strings skipped, brackets counted) and cut it.
        let open = 1;
        let j = i + 1;
        for (; j < length && open > 0; j++) {
          const d = packet.charCodeAt(j);
          const k = kinds[d]!;
          if (k === STRING) {
            const end = stringEnd(packet, j);
            if (end < 0) return unterminated;
            j = end;
          } else if (k === OPEN) open++;
          else if (k === CLOSE) open--;
        }
        if (open > 0) return { ok: false, reason: 'malformed', message: 'a packet whose brackets do not close' };
        pieces ??= [packet.slice(0, start)];
        pieces.push(packet.slice(copiedTo, i), '[]');
        copiedTo = j;
        cut++;
        i = j - 1;
        continue;
      }
      depth++;
      lastOpen = i;
      // Counted before it is known to be there: exact once the container closes (checked there).
      if (++nodes > maxNodes + 1) return tooMany();
    } else {
      if (depth === 0) return { ok: false, reason: 'malformed', message: 'a packet whose brackets do not match' };
      depth--;
      // An empty container holds no first value: take back what its opening bracket counted.
      let k = i - 1;
      while (k > lastOpen && isSpace(packet.charCodeAt(k))) k--;
      if (k === lastOpen) nodes--;
      else if (nodes > maxNodes) return tooMany();
      lastOpen = -1;
    }
  }
  if (depth !== 0) return { ok: false, reason: 'malformed', message: 'a packet whose brackets do not close' };
  if (pieces === null) return { ok: true, text: packet, cut: 0 };
  pieces.push(packet.slice(copiedTo));
  return { ok: true, text: pieces.join(''), cut };
}

/** A packet the bounded decoder refused (socket.io closes the connection that sent it). */
export class PacketRefusedError extends Error {
  constructor(readonly reason: PacketRefusal, message: string) {
    super(message);
    this.name = 'PacketRefusedError';
  }
}

/** What the bounded parser reports (to metrics); its listeners must not throw, and if they do it is ignored. */
export interface BoundedParserEvents {
  refused?(reason: PacketRefusal): void;
  cut?(containers: number): void;
}

interface SocketIoDecoder {
  add(chunk: unknown): void;
  destroy(): void;
}
interface SocketIoParser {
  protocol: number;
  Encoder: new () => { encode(packet: unknown): unknown[] };
  Decoder: new (options?: { maxAttachments?: number }) => SocketIoDecoder;
}

/**
 * socket.io-parser as socket.io itself loads it (the same copy, so the same wire format and the
 * same Encoder the server and its Redis adapter use).
 */
function socketIoParser(): SocketIoParser {
  const fromHere = createRequire(import.meta.url);
  const fromSocketIo = createRequire(fromHere.resolve('socket.io'));
  return fromSocketIo('socket.io-parser') as SocketIoParser;
}

/**
 * A socket.io `parser` (server option): socket.io-parser's Encoder, and its Decoder behind
 * scanPacket, so a packet is bounded in values and depth in one linear pass before JSON.parse
 * (and before socket.io-parser rebuilds binary placeholders, recursively). A refused packet throws
 * from `add`, which socket.io treats as a malformed packet: the connection is closed. The wire
 * format is socket.io's own; clients need nothing different.
 */
export function createBoundedParser(events: BoundedParserEvents = {}, bounds: PacketBounds = boundedPacketBounds): { protocol: number; Encoder: SocketIoParser['Encoder']; Decoder: new () => SocketIoDecoder } {
  const parser = socketIoParser();
  const tell = (report: () => void) => {
    try {
      report();
    } catch {
      // A metric that fails must not change what happens to the packet.
    }
  };
  class BoundedDecoder extends parser.Decoder {
    constructor() {
      super({ maxAttachments: bounds.maxAttachments });
    }

    override add(chunk: unknown): void {
      if (typeof chunk === 'string') {
        const scan = scanPacket(chunk, bounds);
        if (!scan.ok) {
          tell(() => events.refused?.(scan.reason));
          throw new PacketRefusedError(scan.reason, scan.message);
        }
        if (scan.cut > 0) tell(() => events.cut?.(scan.cut));
        super.add(scan.text);
        return;
      }
      super.add(chunk);
    }
  }
  return { protocol: parser.protocol, Encoder: parser.Encoder, Decoder: BoundedDecoder };
}
