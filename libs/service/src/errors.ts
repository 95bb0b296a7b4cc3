import { ArgumentsHost, Catch, HttpException, Logger, type ExceptionFilter } from '@nestjs/common';
import { ErrorCode, httpStatusOf, isCommuneError, type ErrorReply } from '@commune/protocol';
import { ZodError } from 'zod';

/** Socket errors of a connection to a dependency that is down, restarting or unreachable. */
const socketCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'EAI_AGAIN']);
/**
 * PostgreSQL SQLSTATEs of a server that is going away or not there yet: 57P01 admin_shutdown (a
 * restart or pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up
 * or shutting down), 53300 too_many_connections; class 08 (connection exception) is matched apart.
 */
const postgresCodes = new Set(['57P01', '57P02', '57P03', '53300']);
/**
 * Prisma's codes for the same: P1001 can't reach the server, P1002 server timed out, P1008 socket
 * timeout, P1017 server closed the connection, P2024 timed out waiting for a pooled connection.
 */
const prismaCodes = new Set(['P1001', 'P1002', 'P1008', 'P1017', 'P2024']);
/** Prisma driver adapters' error kinds for the same. */
const adapterKinds = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections']);
/** node-postgres' own texts (its errors carry no code): the server hung up, or the pool gave up connecting. */
const postgresTexts = [
  /^Connection terminated/,
  /^Client has encountered a connection error and is not queryable/,
  /^Client was closed and is not queryable/,
  /^timeout exceeded when trying to connect/,
  /^Cannot use a pool after calling end on the pool/,
];

const databaseCode = (code: string): boolean => postgresCodes.has(code) || /^08[0-9A-Z]{3}$/.test(code) || prismaCodes.has(code);

/**
 * What a failure says when it is a dependency that is down for now rather than a fault of the
 * service or the request: `'the database'` for node-postgres and Prisma connection failures
 * (refused, terminated, admin shutdown 57P01/57P02, cannot connect now 57P03, class 08, Prisma
 * P1001/P1017/...), `'a dependency'` for any other socket-level failure (ECONNREFUSED, ECONNRESET,
 * ...); null otherwise. Follows `cause` (and a driver adapter's `cause` object) a few levels deep.
 */
export function unavailableDependency(error: unknown): 'the database' | 'a dependency' | null {
  // The error, its causes and a Prisma error's driver adapter error (meta.driverAdapterError), a few levels deep.
  const pending: unknown[] = [error];
  let socketLevel = false;
  for (let seen = 0; pending.length > 0 && seen < 8; seen++) {
    const current = pending.shift();
    if (typeof current !== 'object' || current === null) continue;
    const fields = current as { code?: unknown; kind?: unknown; originalCode?: unknown; message?: unknown; severity?: unknown; cause?: unknown; meta?: unknown };
    const code = typeof fields.code === 'string' ? fields.code : null;
    // A PostgreSQL error (it has a severity) or a Prisma error naming a connection failure.
    if (code !== null && (typeof fields.severity === 'string' || /^P\d{4}$/.test(code)) && databaseCode(code)) return 'the database';
    if (typeof fields.originalCode === 'string' && databaseCode(fields.originalCode)) return 'the database';
    if (typeof fields.kind === 'string' && adapterKinds.has(fields.kind)) return 'the database';
    if (current instanceof Error && typeof fields.message === 'string' && postgresTexts.some((text) => text.test(fields.message as string))) return 'the database';
    if (code !== null && socketCodes.has(code)) socketLevel = true;
    pending.push(fields.cause);
    const meta = fields.meta as { driverAdapterError?: unknown } | null | undefined;
    if (typeof meta === 'object' && meta !== null) pending.push(meta.driverAdapterError);
  }
  return socketLevel ? 'a dependency' : null;
}

/**
 * Any thrown error as the wire's error reply `{ ok: false, code, message }`. A CommuneError keeps
 * its code and message (they were written for the peer); a ZodError becomes EINVAL naming the
 * fields; a dependency that is down (unavailableDependency: PostgreSQL restarting, a refused
 * connection) is EUNAVAILABLE, to be retried; anything else is the service's own failure:
 * `internalCode` with a fixed message, its text and stack left in the service's log, never sent
 * to a stranger.
 */
export function toErrorReply(error: unknown, internalCode: ErrorCode): ErrorReply {
  if (isCommuneError(error)) return { ok: false, code: error.code, message: error.message };
  const unavailable = unavailableDependency(error);
  if (unavailable !== null) return { ok: false, code: ErrorCode.EUNAVAILABLE, message: `${unavailable} is unavailable for now; retry` };
  if (error instanceof ZodError) {
    const message = error.issues
      .slice(0, 10)
      .map((issue) => `${issue.path.join('.').slice(0, 200) || '(root)'}: ${issue.message.slice(0, 200)}`)
      .join('; ');
    return { ok: false, code: ErrorCode.EINVAL, message };
  }
  return { ok: false, code: internalCode, message: 'internal error (logged by the service)' };
}

/** True when the reply stands for the service's own failure (to be logged with its stack). */
export const isInternal = (reply: ErrorReply): boolean => httpStatusOf(reply.code) >= 500 && reply.code !== ErrorCode.EUNAVAILABLE && reply.code !== ErrorCode.ECHAIN;

/** An error reply and its HTTP status (HttpStatusOfCode, the same in every service). */
export function toHttpError(error: unknown, internalCode: ErrorCode): { status: number; body: ErrorReply | Record<string, unknown> } {
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const response = error.getResponse();
    // A body our own code built (a health check's 503, an error reply) passes through; Nest's own become error replies.
    if (typeof response === 'object' && response !== null && !('statusCode' in response)) return { status, body: response as Record<string, unknown> };
    const code = status === 404 ? ErrorCode.ENOTFOUND : status === 401 ? ErrorCode.EUNAUTHORIZED : status === 413 ? ErrorCode.ETOOBIG : status < 500 ? ErrorCode.EINVAL : internalCode;
    return { status, body: { ok: false, code, message: status < 500 ? error.message : 'internal error (logged by the service)' } };
  }
  // body-parser's errors (malformed JSON, body too large, bad encoding) carry their status and a type.
  const status = (error as { status?: unknown } | null)?.status;
  if (!isCommuneError(error) && !(error instanceof ZodError) && typeof status === 'number' && status >= 400 && status < 500) {
    const tooLarge = status === 413;
    return {
      status,
      body: { ok: false, code: tooLarge ? ErrorCode.ETOOBIG : ErrorCode.EINVAL, message: tooLarge ? 'request body too large' : 'malformed request body' },
    };
  }
  const body = toErrorReply(error, internalCode);
  return { status: httpStatusOf(body.code), body };
}

interface HttpResponse {
  headersSent?: boolean;
  status(code: number): { json(body: unknown): unknown };
}

/**
 * The one exception filter of every service: each error of each endpoint leaves as
 * `{ ok: false, code, message }` with the status of its code. Register it with
 * `app.useGlobalFilters(new ServiceExceptionFilter(ErrorCode.ESCHEDULER))`.
 */
@Catch()
export class ServiceExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('Http');

  constructor(private readonly internalCode: ErrorCode) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const { status, body } = toHttpError(exception, this.internalCode);
    // A body our own code built (a health check's 503 naming what is down) is an answer, not a failure.
    const ownBody = !('code' in body);
    if (status >= 500 && !ownBody && isInternal(body as ErrorReply)) this.logger.error(`unexpected failure: ${(exception as Error)?.stack ?? String(exception)}`);
    const response = host.switchToHttp().getResponse<HttpResponse>();
    if (response.headersSent) return;
    response.status(status).json(body);
  }
}
