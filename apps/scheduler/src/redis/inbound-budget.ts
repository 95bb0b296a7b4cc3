import { ErrorCode, Limits } from '@commune/protocol';
import { reply } from '@commune/service';

/** The part of a socket.io server socket the budget needs. */
export interface BudgetedSocket {
  id: string;
  conn: { on(event: 'packet', listener: (packet: { type: string; data?: unknown }) => void): unknown };
  use(middleware: (event: unknown[], next: (error?: Error) => void) => void): unknown;
}

/**
 * Admission control for large socket.io messages: socket.io has already decoded a message when a
 * handler sees it, and a handler keeps its payload (and copies of it: JSON text, query
 * parameters, room broadcasts) until it answers. A few dozen near-limit messages in flight at once
 * would exhaust a 128 MB heap, so messages of at least Limits.largeMessageBytes are admitted only
 * while the bytes of those in flight stay within Limits.maxLargeMessageBytesInFlight, and one
 * connection's within Limits.maxMessageBytes (several 100 kB result batches, but one near-limit
 * message at a time). A refused one is answered EUNAVAILABLE at
 * once and dropped (its payload becomes garbage). A message counts until its handler answers
 * (its ack is called), or at most `holdLimitMs`.
 */
export class InboundBudget {
  /** A large message's bytes are released after this long even if its handler never answered. */
  static readonly holdLimitMs = 30_000;
  private inFlight = 0;
  refused = 0;

  constructor(
    private readonly maxBytes = Limits.maxLargeMessageBytesInFlight,
    private readonly largeBytes = Limits.largeMessageBytes,
    /** One connection's share: large messages up to one full message's size together (so one near-limit message at a time). */
    private readonly maxBytesPerConnection = Limits.maxMessageBytes,
  ) {}

  get bytesInFlight(): number {
    return this.inFlight;
  }

  /** Installs the budget on a connected socket (before its handlers see any message). */
  guard(socket: BudgetedSocket): void {
    // engine.io emits 'packet' for a frame, then socket.io decodes it and runs the middleware below
    // synchronously: the middleware sees the size of the frame that carried its message.
    let frameBytes = 0;
    let socketBytes = 0;
    socket.conn.on('packet', (packet) => {
      if (packet.type !== 'message') return;
      const data = packet.data;
      frameBytes = typeof data === 'string' ? data.length : data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data.byteLength : 0;
    });
    socket.use((event, next) => {
      const bytes = frameBytes;
      frameBytes = 0;
      if (bytes < this.largeBytes) return next();
      const last = event.length > 1 ? event[event.length - 1] : undefined;
      const ack = typeof last === 'function' ? (last as (...args: unknown[]) => void) : undefined;
      const connectionFull = socketBytes > 0 && socketBytes + bytes > this.maxBytesPerConnection;
      if (connectionFull || this.inFlight + bytes > this.maxBytes) {
        this.refused++;
        reply(ack, {
          ok: false,
          code: ErrorCode.EUNAVAILABLE,
          message: connectionFull
            ? `this connection has ${socketBytes} bytes of large messages in flight (at most ${this.maxBytesPerConnection}); send the next when one is answered`
            : `the scheduler is handling ${this.inFlight} bytes of large messages (maxLargeMessageBytesInFlight ${this.maxBytes}); try again`,
        });
        return;
      }
      this.inFlight += bytes;
      socketBytes += bytes;
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        clearTimeout(timer);
        this.inFlight -= bytes;
        socketBytes -= bytes;
      };
      const timer = setTimeout(release, InboundBudget.holdLimitMs);
      timer.unref();
      // The handler answers through the last argument: wrap it (or add one) so that answering releases the bytes.
      if (ack) event[event.length - 1] = (...args: unknown[]) => { release(); ack(...args); };
      else event.push(release);
      next();
    });
  }
}
