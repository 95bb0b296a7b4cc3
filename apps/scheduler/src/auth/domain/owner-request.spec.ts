import { Wallet } from 'ethers';
import { OwnerRequestHeaders, SignedKind, signRequest, verifySignedRequest, type NonceStore } from '@commune/protocol';
import { ownerRequestCheck } from './owner-request.js';

const owner = new Wallet('0x' + '07'.repeat(32));
const now = 1_800_000_000_000;
const maxLifetimeMs = 600_000;
const path = '/jobs/j_0000000001/results/list?slices=%7B%7D';

function memoryNonces(): NonceStore {
  const used = new Set<string>();
  return {
    async claim(signer, kind, nonce) {
      const key = `${kind}:${signer}:${nonce}`;
      if (used.has(key)) return false;
      used.add(key);
      return true;
    },
  };
}

async function headersFor(fields: Partial<{ method: string; path: string; owner: string; nonce: string; expiresAt: number }> = {}, signer = owner, kind: SignedKind = SignedKind.ownerRequest) {
  const request = { method: 'GET', path, owner: owner.address, nonce: 'n_abcdefgh', expiresAt: now + 1000, ...fields };
  return {
    [OwnerRequestHeaders.owner]: request.owner,
    [OwnerRequestHeaders.nonce]: request.nonce,
    [OwnerRequestHeaders.expiresAt]: String(request.expiresAt),
    [OwnerRequestHeaders.signature]: await signRequest(signer, kind, request),
  };
}

const verify = (method: string, at: string, headers: Record<string, string>, nonces = memoryNonces()) =>
  verifySignedRequest(ownerRequestCheck(method, at, headers), { now, maxLifetimeMs, nonces });

describe(ownerRequestCheck.name, () => {
  it('accepts a request signed by its owner for this method and path', async () => {
    expect(ownerRequestCheck('GET', path, await headersFor()).payload).toEqual({ method: 'GET', path, owner: owner.address, nonce: 'n_abcdefgh', expiresAt: now + 1000 });
    await expect(verify('GET', path, await headersFor())).resolves.toBe(owner.address);
  });
  it('refuses an unsigned request with EPERM, naming the headers', () => {
    expect(() => ownerRequestCheck('GET', path, {})).toThrow(expect.objectContaining({ code: 'EPERM', message: expect.stringContaining(OwnerRequestHeaders.signature) }));
  });
  it('refuses a signature by someone else, made for another method or path, or of another kind, with EBADSIGNATURE', async () => {
    const stranger = Wallet.createRandom();
    for (const [method, at, headers] of [
      ['GET', path, await headersFor({}, stranger as unknown as Wallet)],
      ['DELETE', path, await headersFor()],
      ['GET', '/jobs/j_0000000001/results/list', await headersFor()],
      ['GET', path, await headersFor({}, owner, SignedKind.jobAction)],
    ] as const) {
      await expect(verify(method, at, headers)).rejects.toMatchObject({ code: 'EBADSIGNATURE' });
    }
  });
  it('refuses an expired request, or one whose expiry lies too far ahead, with EEXPIRED', async () => {
    await expect(verify('GET', path, await headersFor({ expiresAt: now - 1 }))).rejects.toMatchObject({ code: 'EEXPIRED' });
    await expect(verify('GET', path, await headersFor({ expiresAt: now + maxLifetimeMs + 1 }))).rejects.toMatchObject({ code: 'EEXPIRED' });
  });
  it('refuses a reused nonce with EREPLAY', async () => {
    const nonces = memoryNonces();
    const headers = await headersFor();
    await expect(verify('GET', path, headers, nonces)).resolves.toBe(owner.address);
    await expect(verify('GET', path, headers, nonces)).rejects.toMatchObject({ code: 'EREPLAY' });
  });
  it('refuses malformed headers with EINVAL', async () => {
    const headers = await headersFor();
    expect(() => ownerRequestCheck('GET', path, { ...headers, [OwnerRequestHeaders.owner]: 'nobody' })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => ownerRequestCheck('GET', path, { ...headers, [OwnerRequestHeaders.nonce]: 'short' })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});
