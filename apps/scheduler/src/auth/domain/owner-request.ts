import {
  CommuneError, ErrorCode, OwnerRequestHeaders, OwnerRequestSchema, SignedKind, type OwnerRequest, type SignedRequestCheck,
} from '@commune/protocol';

/** Header lookup as Express gives it: lower-case names, a string or a list. */
export type RequestHeaders = Record<string, string | string[] | undefined>;

function header(headers: RequestHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Reads an owner-signed REST request (protocol OwnerRequestSchema) from its method, path and
 * headers, as the check protocol verifySignedRequest takes (kind owner-request, signed by the
 * claimed owner, single-use nonce). Pure: EPERM without a signature, EINVAL for malformed
 * headers; the signature itself is checked by the caller.
 */
export function ownerRequestCheck(method: string, path: string, headers: RequestHeaders): SignedRequestCheck & { payload: OwnerRequest } {
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
  return { kind: SignedKind.ownerRequest, payload: request, signature, signer: request.owner, expiresAt: request.expiresAt, nonce: request.nonce };
}
