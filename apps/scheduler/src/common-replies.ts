import { ErrorCode, type ErrorReply, type ValueBounds } from '@commune/protocol';
import { handle as handleMessage, run, toErrorReply as toReply } from '@commune/service';
import type { z } from 'zod';

/**
 * The scheduler's side of @commune/service: its own failures answer ESCHEDULER (their text stays
 * in the log). Every socket.io message from a stranger comes in through `handle`.
 */
const internalCode = ErrorCode.ESCHEDULER;

export { reply } from '@commune/service';

/** Any thrown error as the wire's error reply (internal failures without their text). */
export const toErrorReply = (error: unknown): ErrorReply => toReply(error, internalCode);

/** Runs a socket handler: its value is the ack's reply, a thrown error the error reply. */
export const answer = <T>(ack: unknown, action: () => T | Promise<T>): Promise<void> => run(ack, internalCode, action);

/** Takes `event` on `socket`: bounded, parsed with `schema`, answered; nothing thrown escapes. */
export function handle<S extends z.ZodType, R>(
  socket: { on(event: string, listener: (...args: unknown[]) => void): unknown },
  event: string,
  schema: S,
  handler: (payload: z.output<S>) => R | Promise<R>,
  bounds?: ValueBounds,
): void {
  handleMessage(socket, event, schema, { internalCode, bounds }, handler);
}
