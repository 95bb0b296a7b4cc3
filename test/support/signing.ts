import { randomBytes } from 'node:crypto';
import type { Signer } from 'ethers';
import { SignedKind, signDeploy, signRequest, type DeployRequest, type JobSpecInput, JobSpecSchema } from '@commune/protocol';

/** A job action (cancel, pause, resume, escrow) signed as the SDK signs it. */
export async function signedAction(wallet: Signer, request: Record<string, unknown>): Promise<{ request: Record<string, unknown>; signature: string }> {
  return { request, signature: await signRequest(wallet, SignedKind.jobAction, request) };
}

/** A signed deploy request for a free job, as the SDK would send it. */
export async function signedDeploy(wallet: Signer, spec: Partial<JobSpecInput> & Pick<JobSpecInput, 'work' | 'inputSet'>): Promise<DeployRequest> {
  const now = Date.now();
  const job = JobSpecSchema.parse({
    owner: await wallet.getAddress(),
    arguments: [],
    nonce: randomBytes(12).toString('hex'),
    issuedAt: now,
    expiresAt: now + 60_000,
    ...spec,
  });
  return { job, signature: await signDeploy(wallet, job) };
}

/**
 * An owner-signed REST request (protocol OwnerRequestSchema), as the SDK sends it. `path` is
 * from the scheduler's root with its query string ('/jobs/j_.../results/list?slices=...').
 * Resolves with the HTTP status and the JSON body.
 */
export async function signedFetch(
  wallet: Signer,
  baseUrl: string,
  method: 'GET' | 'DELETE' | 'POST',
  path: string,
  overrides: Partial<{ nonce: string; expiresAt: number; owner: string; signedPath: string }> = {},
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read whatever the scheduler answered
): Promise<{ status: number; body: any }> {
  const { OwnerRequestHeaders, OwnerRequestSchema } = await import('@commune/protocol');
  const { signedPath, ...fields } = overrides;
  const signed = OwnerRequestSchema.parse({
    method,
    path: signedPath ?? path,
    owner: await wallet.getAddress(),
    nonce: randomBytes(12).toString('hex'),
    expiresAt: Date.now() + 60_000,
    ...fields,
  });
  const response = await fetch(baseUrl + path, {
    method,
    headers: {
      [OwnerRequestHeaders.owner]: signed.owner,
      [OwnerRequestHeaders.nonce]: signed.nonce,
      [OwnerRequestHeaders.expiresAt]: String(signed.expiresAt),
      [OwnerRequestHeaders.signature]: await signRequest(wallet, SignedKind.ownerRequest, signed),
    },
  });
  return { status: response.status, body: await response.json().catch(() => undefined) };
}
