import { ArgumentsHost, Catch, HttpException, Logger, type ExceptionFilter } from '@nestjs/common';
import { ErrorCode, httpStatusOf, isCommuneError, type ErrorReply } from '@commune/protocol';
import { ZodError } from 'zod';

/**
 * Any thrown error as the wire's error reply `{ ok: false, code, message }`. A CommuneError keeps
 * its code and message (they were written for the peer); a ZodError becomes EINVAL naming the
 * fields; anything else is the service's own failure: `internalCode` with a fixed message, its
 * text and stack left in the service's log, never sent to a stranger.
 */
export function toErrorReply(error: unknown, internalCode: ErrorCode): ErrorReply {
  if (isCommuneError(error)) return { ok: false, code: error.code, message: error.message };
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
    if (status >= 500 && isInternal(body as ErrorReply)) this.logger.error(`unexpected failure: ${(exception as Error)?.stack ?? String(exception)}`);
    const response = host.switchToHttp().getResponse<HttpResponse>();
    if (response.headersSent) return;
    response.status(status).json(body);
  }
}
