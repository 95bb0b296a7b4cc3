import { z } from 'zod';
import { assertBounded, verifySignedRequest, type SignedKind } from '@commune/protocol';

/** What a signed request to the bank must carry: the signer's address and an expiry. */
interface SignedPayload {
  from: string;
  expiresAt: number;
}

const SignatureSchema = z.string().max(200).regex(/^0x[0-9a-fA-F]+$/);

/** `{ <field>: unknown, signature }` and nothing else; built once per field (zod compiles a schema on first use). */
const envelopes = new Map<string, z.ZodType<Record<string, unknown> & { signature: string }>>();
function envelopeOf(field: string): z.ZodType<Record<string, unknown> & { signature: string }> {
  let schema = envelopes.get(field);
  if (!schema) {
    schema = z.object({ [field]: z.unknown(), signature: SignatureSchema }).strict() as unknown as z.ZodType<Record<string, unknown> & { signature: string }>;
    envelopes.set(field, schema);
  }
  return schema;
}

/**
 * The one way the bank takes a signed request (POST /transfers, POST /withdrawals): the body is
 * bounded (size and depth, without recursion), the payload under `field` is parsed with its
 * strict schema (unknown fields are refused, so what is executed is what was signed), and the
 * signature is verified with the protocol's verifySignedRequest over exactly the payload as the
 * client sent it, as a request of `kind`: a transfer's signature is never a withdrawal's.
 * EEXPIRED past the expiry or beyond `maxLifetimeMs` ahead; EBADSIGNATURE unless `from` signed
 * it. Replays are answered by the caller's idempotency key (the request's nonce).
 */
export async function verifiedSignedBody<S extends z.ZodType<SignedPayload>>(
  kind: SignedKind,
  field: string,
  schema: S,
  body: unknown,
  maxLifetimeMs: number,
  now = Date.now(),
): Promise<{ payload: z.output<S>; signature: string }> {
  assertBounded(body, undefined, 'request body');
  const envelope = envelopeOf(field).parse(body);
  const sent = envelope[field];
  const payload = schema.parse(sent) as z.output<S>;
  await verifySignedRequest({ kind, payload: sent, signature: envelope.signature, signer: payload.from, expiresAt: payload.expiresAt }, { now, maxLifetimeMs });
  return { payload, signature: envelope.signature };
}
