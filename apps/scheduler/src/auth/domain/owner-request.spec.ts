import { Wallet } from 'ethers';
import { OwnerRequestHeaders, signPayload } from '@commune/protocol';
import { verifyOwnerRequest } from './owner-request.js';

const owner = new Wallet('0x' + '07'.repeat(32));
const now = 1_800_000_000_000;
const lifetimeMs = 600_000;
const path = '/jobs/j_0000000001/results/list?slices=%7B%7D';

async function headersFor(fields: Partial<{ method: string; path: string; owner: string; nonce: string; expiresAt: number }> = {}, signer = owner) {
  const request = { method: 'GET', path, owner: owner.address, nonce: 'n_abcdefgh', expiresAt: now + 1000, ...fields };
  return {
    [OwnerRequestHeaders.owner]: request.owner,
    [OwnerRequestHeaders.nonce]: request.nonce,
    [OwnerRequestHeaders.expiresAt]: String(request.expiresAt),
    [OwnerRequestHeaders.signature]: await signPayload(signer, request),
  };
}

describe(verifyOwnerRequest.name, () => {
  it('accepts a request signed by its owner for this method and path', async () => {
    expect(verifyOwnerRequest('GET', path, await headersFor(), now, lifetimeMs)).toEqual({ method: 'GET', path, owner: owner.address, nonce: 'n_abcdefgh', expiresAt: now + 1000 });
  });
  it('refuses an unsigned request with EPERM, naming the headers', () => {
    expect(() => verifyOwnerRequest('GET', path, {}, now, lifetimeMs)).toThrow(expect.objectContaining({ code: 'EPERM', message: expect.stringContaining(OwnerRequestHeaders.signature) }));
  });
  it('refuses a signature by someone else, or made for another method or path, with EBADSIGNATURE', async () => {
    const stranger = Wallet.createRandom();
    for (const [method, at, headers] of [
      ['GET', path, await headersFor({}, stranger as unknown as Wallet)],
      ['DELETE', path, await headersFor()],
      ['GET', '/jobs/j_0000000001/results/list', await headersFor()],
    ] as const) {
      expect(() => verifyOwnerRequest(method, at, headers, now, lifetimeMs)).toThrow(expect.objectContaining({ code: 'EBADSIGNATURE' }));
    }
  });
  it('refuses an expired request, or one whose expiry lies too far ahead, with EEXPIRED', async () => {
    const expired = await headersFor({ expiresAt: now - 1 });
    expect(() => verifyOwnerRequest('GET', path, expired, now, lifetimeMs)).toThrow(expect.objectContaining({ code: 'EEXPIRED' }));
    const far = await headersFor({ expiresAt: now + lifetimeMs + 1 });
    expect(() => verifyOwnerRequest('GET', path, far, now, lifetimeMs)).toThrow(expect.objectContaining({ code: 'EEXPIRED' }));
  });
  it('refuses malformed headers with EINVAL', async () => {
    const headers = await headersFor();
    expect(() => verifyOwnerRequest('GET', path, { ...headers, [OwnerRequestHeaders.owner]: 'nobody' }, now, lifetimeMs)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => verifyOwnerRequest('GET', path, { ...headers, [OwnerRequestHeaders.nonce]: 'short' }, now, lifetimeMs)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});
