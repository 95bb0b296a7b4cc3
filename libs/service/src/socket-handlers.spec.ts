import { EventEmitter } from 'node:events';
import { CommuneError, ErrorCode, type ErrorReply } from '@commune/protocol';
import { z } from 'zod';
import { handle } from './socket-handlers.js';
import { toHttpError } from './errors.js';

const nested = (depth: number): unknown => {
  let value: unknown = 0;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
};

/** Emits `payload` with an ack and resolves with what the handler answered. */
const ask = (socket: EventEmitter, event: string, payload: unknown): Promise<unknown> =>
  new Promise((resolve) => {
    socket.emit(event, payload, resolve);
  });

describe('handle: the one way a service takes a socket message', () => {
  const socket = new EventEmitter();
  const seen: unknown[] = [];
  handle(socket, 'echo', z.object({ n: z.number() }), { internalCode: ErrorCode.ESCHEDULER }, ({ n }) => {
    seen.push(n);
    if (n === 13) throw new Error('secret internal detail at /srv/app.js:12');
    if (n === 7) throw new CommuneError(ErrorCode.EPERM, 'not yours');
    return { ok: true, n };
  });

  it('parses and answers', async () => {
    expect(await ask(socket, 'echo', { n: 1 })).toEqual({ ok: true, n: 1 });
  });

  it('answers EINVAL for null and malformed payloads instead of throwing', async () => {
    expect(((await ask(socket, 'echo', null)) as ErrorReply).code).toBe('EINVAL');
    expect(((await ask(socket, 'echo', { n: 'x' })) as ErrorReply).code).toBe('EINVAL');
  });

  it('refuses a payload nested 20,000 deep before parsing it (ETOODEEP)', async () => {
    const before = seen.length;
    expect(((await ask(socket, 'echo', nested(20_000))) as ErrorReply).code).toBe('ETOODEEP');
    expect(seen.length).toBe(before);
  });

  it("keeps a CommuneError's code and hides an internal error's text", async () => {
    expect(await ask(socket, 'echo', { n: 7 })).toEqual({ ok: false, code: 'EPERM', message: 'not yours' });
    const internal = (await ask(socket, 'echo', { n: 13 })) as ErrorReply;
    expect(internal.code).toBe('ESCHEDULER');
    expect(internal.message).not.toContain('/srv/app.js');
  });

  it('survives a peer that sends no ack', () => {
    expect(() => socket.emit('echo', { n: 2 })).not.toThrow();
    expect(() => socket.emit('echo', nested(20_000))).not.toThrow();
  });
});

describe('toHttpError: one status per code', () => {
  it('gives the same status in every service and hides internal text', () => {
    expect(toHttpError(new CommuneError(ErrorCode.EBADSIGNATURE, 'x'), ErrorCode.EBANK).status).toBe(401);
    expect(toHttpError(new CommuneError(ErrorCode.EPERM, 'x'), ErrorCode.ESCHEDULER).status).toBe(403);
    const internal = toHttpError(new TypeError("Cannot read properties of null (reading 'message')"), ErrorCode.EBANK);
    expect(internal.status).toBe(500);
    expect(internal.body).toEqual({ ok: false, code: 'EBANK', message: 'internal error (logged by the service)' });
    const tooLarge = toHttpError(Object.assign(new Error('request entity too large'), { status: 413, type: 'entity.too.large' }), ErrorCode.EBANK);
    expect(tooLarge).toEqual({ status: 413, body: { ok: false, code: 'ETOOBIG', message: 'request body too large' } });
  });
});
