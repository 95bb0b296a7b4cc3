import { ErrorCode, isCommuneError, type ErrorReply } from '@commune/protocol';
import { ZodError } from 'zod';

/** Turns any thrown error into the wire's error reply: a code and a message a person can act on. */
export function toErrorReply(error: unknown): ErrorReply {
  if (isCommuneError(error)) return { ok: false, code: error.code, message: error.message };
  if (error instanceof ZodError) {
    return { ok: false, code: ErrorCode.EINVAL, message: error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ') };
  }
  return { ok: false, code: ErrorCode.ESCHEDULER, message: (error as Error)?.message ?? String(error) };
}

/** Calls an ack if the peer passed one (a peer that forgets the ack must not crash a handler). */
export function reply<T>(ack: unknown, value: T): void {
  if (typeof ack === 'function') (ack as (value: T) => void)(value);
}

/** Runs a socket handler: its value is the ack's reply, a thrown error the error reply. */
export async function answer<T>(ack: unknown, action: () => Promise<T>): Promise<void> {
  try {
    reply(ack, await action());
  } catch (error) {
    reply(ack, toErrorReply(error));
  }
}
