import { Logger } from '@nestjs/common';
import { assertBounded, ErrorCode, type ValueBounds } from '@commune/protocol';
import type { z } from 'zod';
import { isInternal, toErrorReply } from './errors.js';

const logger = new Logger('Socket');

/** Calls an ack if the peer passed one (a peer that forgets the ack must not crash a handler). */
export function reply<T>(ack: unknown, value: T): void {
  if (typeof ack !== 'function') return;
  try {
    (ack as (value: T) => void)(value);
  } catch (error) {
    logger.warn(`an ack could not be sent: ${(error as Error)?.message ?? String(error)}`);
  }
}

/** The part of a socket.io socket a handler needs: only `on`, so any socket type fits. */
interface EventSource {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

export interface HandlerOptions {
  /** Code of the service's own failures (ESCHEDULER, EBANK): their text is logged, never sent. */
  internalCode: ErrorCode;
  /** Bounds the payload is checked against before it is parsed (defaults: protocol's defaultValueBounds). */
  bounds?: ValueBounds;
}

/**
 * The one way a service takes a socket.io message from a stranger: the payload is checked
 * against size and depth bounds without recursion, then parsed with its zod schema, then
 * handed to `handler`. The handler's value is the ack's reply; anything thrown (or a rejected
 * promise) becomes an error reply. Nothing a peer sends can throw into the event loop.
 */
export function handle<S extends z.ZodType, R>(
  socket: EventSource,
  event: string,
  schema: S,
  options: HandlerOptions,
  handler: (payload: z.output<S>) => R | Promise<R>,
): void {
  socket.on(event, (...args: unknown[]) => {
    const ack = args.length > 1 ? args[args.length - 1] : undefined;
    void run(ack, options.internalCode, () => {
      assertBounded(args[0], options.bounds, `${event} payload`);
      const parsed = schema.safeParse(args[0]);
      if (!parsed.success) throw parsed.error;
      return handler(parsed.data);
    });
  });
}

/** Runs `action`; its value goes to the ack, an error as an error reply (logged when it is the service's own failure). */
export async function run<T>(ack: unknown, internalCode: ErrorCode, action: () => T | Promise<T>): Promise<void> {
  try {
    reply(ack, await action());
  } catch (error) {
    const errorReply = toErrorReply(error, internalCode);
    if (isInternal(errorReply)) logger.error(`socket handler failed: ${(error as Error)?.stack ?? String(error)}`);
    reply(ack, errorReply);
  }
}
