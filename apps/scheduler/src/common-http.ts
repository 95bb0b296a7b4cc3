import { HttpException, HttpStatus } from '@nestjs/common';
import { ErrorCode, isCommuneError } from '@commune/protocol';
import { toErrorReply } from './common-replies.js';

const httpStatusOf: Partial<Record<string, number>> = {
  [ErrorCode.ENOTFOUND]: HttpStatus.NOT_FOUND,
  [ErrorCode.EINVAL]: HttpStatus.BAD_REQUEST,
  [ErrorCode.EPERM]: HttpStatus.FORBIDDEN,
  [ErrorCode.EBADSIGNATURE]: HttpStatus.UNAUTHORIZED,
  [ErrorCode.EEXPIRED]: HttpStatus.UNAUTHORIZED,
};

/** Runs a REST handler; a thrown error becomes the wire's error reply with a fitting HTTP status. */
export async function runHttp<T>(action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    const body = toErrorReply(error);
    const status = httpStatusOf[body.code] ?? (isCommuneError(error) ? HttpStatus.CONFLICT : HttpStatus.INTERNAL_SERVER_ERROR);
    throw new HttpException(body, status);
  }
}
