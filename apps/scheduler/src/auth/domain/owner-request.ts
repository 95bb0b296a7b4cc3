import { CommuneError, ErrorCode, OwnerRequestHeaders, OwnerRequestSchema, recoverSigner, type OwnerRequest } from '@commune/protocol';

/** Header lookup as Express gives it: lower-case names, a string or a list. */
export type RequestHeaders = Record<string, string | string[] | undefined>;

function header(headers: RequestHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks an owner-signed REST request (protocol OwnerRequestSchema): the signature over
 * {method, path, owner, nonce, expiresAt} must be the claimed owner's, and the expiry within
 * `maxLifetimeMs` of `now`. Pure: the caller checks the nonce has not been used.
 */
export function verifyOwnerRequest(method: string, path: string, headers: RequestHeaders, now: number, maxLifetimeMs: number): OwnerRequest {
  const signature = header(headers, OwnerRequestHeaders.signature);
  if (!signature) {
    throw new CommuneError(
      ErrorCode.EPERM,
      `this request must be signed by the job owner (headers ${Object.values(OwnerRequestHeaders).join(', ')})`,
    );
  }
  const parsed = OwnerRequestSchema.safeParse({
    method,
    path,
    owner: header(headers, OwnerRequestHeaders.owner),
    nonce: header(headers, OwnerRequestHeaders.nonce),
    expiresAt: Number(header(headers, OwnerRequestHeaders.expiresAt)),
  });
  if (!parsed.success) throw new CommuneError(ErrorCode.EINVAL, `bad signed request headers: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
  const request = parsed.data;
  if (request.expiresAt < now || request.expiresAt - now > maxLifetimeMs) {
    throw new CommuneError(ErrorCode.EEXPIRED, 'the signed request is expired or its expiry is too far ahead');
  }
  if (recoverSigner(request, signature) !== request.owner) {
    throw new CommuneError(ErrorCode.EBADSIGNATURE, `the request signature was not made by ${request.owner}`);
  }
  return request;
}
