import { ArgumentsHost, Catch, HttpException, HttpStatus, Logger, type ExceptionFilter } from '@nestjs/common';
import { ErrorCode, isCommuneError, type ErrorReply } from '@commune/protocol';
import { ZodError } from 'zod';

/** Code of a reply to an unexpected failure (a bug or an outage), with status 500. */
export const INTERNAL_ERROR_CODE = 'EBANK';

/** HTTP status of each error code the bank answers with. */
export const httpStatusOfCode: Partial<Record<string, number>> = {
  [ErrorCode.EINVAL]: HttpStatus.BAD_REQUEST,
  [ErrorCode.EEXPIRED]: HttpStatus.BAD_REQUEST,
  [ErrorCode.EUNAUTHORIZED]: HttpStatus.UNAUTHORIZED,
  [ErrorCode.ENOFUNDS]: HttpStatus.PAYMENT_REQUIRED,
  [ErrorCode.ECHAIN]: HttpStatus.SERVICE_UNAVAILABLE,
  [ErrorCode.EBADSIGNATURE]: HttpStatus.FORBIDDEN,
  [ErrorCode.ENOTFOUND]: HttpStatus.NOT_FOUND,
  [ErrorCode.EREPLAY]: HttpStatus.CONFLICT,
  [ErrorCode.EKEYREUSED]: HttpStatus.CONFLICT,
  [ErrorCode.EHOLDCLOSED]: HttpStatus.CONFLICT,
};

const codeOfStatus = (status: number): string =>
  status === 404 ? ErrorCode.ENOTFOUND : status === 401 ? ErrorCode.EUNAUTHORIZED : status < 500 ? ErrorCode.EINVAL : INTERNAL_ERROR_CODE;

/** Any thrown error as the bank's error body `{ ok: false, code, message }` and its HTTP status. */
export function toHttpError(error: unknown): { status: number; body: ErrorReply | Record<string, unknown> } {
  if (isCommuneError(error)) return { status: httpStatusOfCode[error.code] ?? HttpStatus.CONFLICT, body: { ok: false, code: error.code, message: error.message } };
  if (error instanceof ZodError) {
    const message = error.issues.map((issue) => `${issue.path.join('.') || '(body)'}: ${issue.message}`).join('; ');
    return { status: HttpStatus.BAD_REQUEST, body: { ok: false, code: ErrorCode.EINVAL, message } };
  }
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const response = error.getResponse();
    // Bodies our own code built (the health check's 503) pass through; Nest's own become error replies.
    if (typeof response === 'object' && response !== null && !('statusCode' in response)) return { status, body: response as Record<string, unknown> };
    return { status, body: { ok: false, code: codeOfStatus(status), message: error.message } };
  }
  // body-parser's errors (malformed JSON, body too large) carry their status.
  const status = (error as { status?: unknown; type?: unknown } | null)?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, body: { ok: false, code: ErrorCode.EINVAL, message: (error as Error).message } };
  }
  return { status: HttpStatus.INTERNAL_SERVER_ERROR, body: { ok: false, code: INTERNAL_ERROR_CODE, message: 'internal error' } };
}

interface HttpResponse {
  status(code: number): { json(body: unknown): unknown };
}

/** Every error of every endpoint leaves as `{ ok: false, code, message }` with a fitting status. */
@Catch()
export class BankExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('Http');

  catch(exception: unknown, host: ArgumentsHost): void {
    const { status, body } = toHttpError(exception);
    if (status >= 500 && status !== HttpStatus.SERVICE_UNAVAILABLE) this.logger.error(`unexpected failure: ${(exception as Error)?.stack ?? String(exception)}`);
    host.switchToHttp().getResponse<HttpResponse>().status(status).json(body);
  }
}
