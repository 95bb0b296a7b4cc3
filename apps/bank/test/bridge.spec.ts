import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet } from 'ethers';
import { ZodError } from 'zod';
import { ErrorCode, SignedKind, signRequest, type WithdrawalRequest } from '@commune/protocol';
import { loadBridgeSettings } from '../src/bridge/bridge-env.js';
import { depositCursorName, depositKey, nextScanRange } from '../src/bridge/domain/deposits.js';
import { SignedWithdrawalPayloadSchema } from '../src/bridge/withdrawals.service.js';
import { verifiedSignedBody } from '../src/http/signed-body.js';
import {
  assertSameRequest,
  decideWithdrawalStep,
  newWithdrawalId,
  requestHashOf,
  toWithdrawalReply,
  withdrawalHoldExpiry,
  withdrawalKeys,
  WithdrawalIdPattern,
  type ChainView,
  type WithdrawalRecord,
} from '../src/bridge/domain/withdrawal.js';

const limits = { maxSendAttempts: 3, resendAfterMs: 60_000 };
const now = 1_800_000_000_000;

function record(overrides: Partial<WithdrawalRecord> = {}): WithdrawalRecord {
  return {
    withdrawalId: '0x' + 'ab'.repeat(32),
    from: '0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1',
    to: '0xFFcf8FDEE72ac11b5c542428B35EEF5769C409f0',
    amount: '1000',
    idempotencyKey: 'withdraw-0001',
    requestHash: '0x01',
    status: 'pending',
    holdId: 'h_1',
    nonce: null,
    txHash: null,
    rawTx: null,
    accepted: false,
    rejections: 0,
    replacements: 0,
    resends: 0,
    cancelling: false,
    lastBroadcastAt: null,
    blockNumber: null,
    signedAtBlock: null,
    error: null,
    createdAt: new Date(now - 1000),
    updatedAt: new Date(now - 1000),
    ...overrides,
  };
}
const signed = (overrides: Partial<WithdrawalRecord> = {}) =>
  record({ nonce: 7, txHash: '0xaa', rawTx: '0xf8', accepted: true, status: 'sent', lastBroadcastAt: new Date(now - 1000), ...overrides });
const chain = (overrides: Partial<ChainView> = {}): ChainView => ({ latestBlock: 100, confirmations: 3, operatorNonceLatest: 7, operatorNonceFinal: 7, now, ...overrides });
const notPaid = { paid: null, txKnown: true };

describe('decideWithdrawalStep', () => {
  it('leaves finished withdrawals alone', () => {
    expect(decideWithdrawalStep(record({ status: 'confirmed' }), chain(), notPaid, limits)).toEqual({ kind: 'done' });
    expect(decideWithdrawalStep(record({ status: 'failed' }), chain(), notPaid, limits)).toEqual({ kind: 'done' });
  });

  it('reserves first when the hold is missing, then signs', () => {
    expect(decideWithdrawalStep(record({ holdId: null }), chain(), notPaid, limits).kind).toBe('reserve');
    expect(decideWithdrawalStep(record(), chain(), notPaid, limits).kind).toBe('sign');
  });

  it('burns a payment only once it is `confirmations` blocks deep', () => {
    const paid = { txHash: '0xpaid', blockNumber: 98 };
    expect(decideWithdrawalStep(signed(), chain({ latestBlock: 100 }), { paid, txKnown: true }, limits)).toEqual({ kind: 'record-payout', ...paid });
    expect(decideWithdrawalStep(signed({ txHash: '0xpaid', blockNumber: 98 }), chain({ latestBlock: 100 }), { paid, txKnown: true }, limits).kind).toBe('wait');
    expect(decideWithdrawalStep(signed(), chain({ latestBlock: 101 }), { paid, txKnown: true }, limits)).toEqual({ kind: 'burn', ...paid });
  });

  it('never releases a withdrawal the vault paid, whatever happened to its nonce or broadcasts', () => {
    const paid = { txHash: '0xother', blockNumber: 90 };
    const awkward = [
      signed({ rejections: 99, accepted: false, status: 'pending' }),
      signed({ cancelling: true, replacements: 99 }),
      signed(),
    ];
    for (const candidate of awkward) {
      const step = decideWithdrawalStep(candidate, chain({ operatorNonceLatest: 20, operatorNonceFinal: 20 }), { paid, txKnown: false }, limits);
      expect(step.kind).toBe('burn');
    }
  });

  it('releases when the nonce slot is used for good and the vault did not pay (reverted, replaced or cancelled)', () => {
    expect(decideWithdrawalStep(signed(), chain({ operatorNonceLatest: 8, operatorNonceFinal: 8 }), notPaid, limits).kind).toBe('release');
    const cancelled = decideWithdrawalStep(signed({ cancelling: true }), chain({ operatorNonceLatest: 8, operatorNonceFinal: 8 }), notPaid, limits);
    expect(cancelled).toMatchObject({ kind: 'release', reason: expect.stringContaining('cancelled') });
  });

  it('waits while the nonce is used only in blocks that are not final yet', () => {
    expect(decideWithdrawalStep(signed(), chain({ operatorNonceLatest: 8, operatorNonceFinal: 7 }), notPaid, limits).kind).toBe('wait');
  });

  it('broadcasts again a transaction the node never took, until it refused it maxSendAttempts times', () => {
    const unaccepted = signed({ accepted: false, status: 'pending' });
    expect(decideWithdrawalStep({ ...unaccepted, rejections: 2 }, chain(), { paid: null, txKnown: false }, limits).kind).toBe('broadcast');
    expect(decideWithdrawalStep({ ...unaccepted, rejections: 3, error: 'insufficient funds' }, chain(), { paid: null, txKnown: false }, limits)).toMatchObject({
      kind: 'release',
      reason: expect.stringContaining('insufficient funds'),
    });
  });

  it('does not give up on a transaction the node holds, even after refusals', () => {
    const step = decideWithdrawalStep(signed({ accepted: false, status: 'pending', rejections: 9 }), chain(), { paid: null, txKnown: true }, limits);
    expect(step.kind).toBe('wait');
  });

  it('broadcasts again, byte for byte, a transaction the node dropped (or whose block was reorganised away)', () => {
    expect(decideWithdrawalStep(signed(), chain(), { paid: null, txKnown: false }, limits).kind).toBe('broadcast');
  });

  it('keeps a dropped transaction it cannot get back into the pool, retrying every resendAfterMs, and never releases it', () => {
    const refused = signed({ rejections: 50 });
    expect(decideWithdrawalStep(refused, chain(), { paid: null, txKnown: false }, limits).kind).toBe('wait');
    expect(decideWithdrawalStep({ ...refused, lastBroadcastAt: new Date(now - 61_000) }, chain(), { paid: null, txKnown: false }, limits).kind).toBe('broadcast');
  });

  it('broadcasts a transaction pending too long once more, byte for byte, before replacing it', () => {
    const stale = { lastBroadcastAt: new Date(now - 61_000) };
    expect(decideWithdrawalStep(signed(stale), chain(), notPaid, limits)).toEqual({ kind: 'broadcast' });
    expect(decideWithdrawalStep(signed({ ...stale, resends: 1 }), chain(), notPaid, limits).kind).toBe('replace');
  });

  it('replaces a transaction pending too long with higher fees, then cancels it after maxSendAttempts replacements', () => {
    const stale = { lastBroadcastAt: new Date(now - 61_000), resends: 1 };
    expect(decideWithdrawalStep(signed(stale), chain(), notPaid, limits)).toEqual({ kind: 'replace', cancel: false });
    expect(decideWithdrawalStep(signed({ ...stale, replacements: 3 }), chain(), notPaid, limits)).toEqual({ kind: 'replace', cancel: true });
    expect(decideWithdrawalStep(signed({ ...stale, replacements: 4, cancelling: true }), chain(), notPaid, limits)).toEqual({ kind: 'replace', cancel: true });
    expect(decideWithdrawalStep(signed({ ...stale, replacements: 6, cancelling: true }), chain(), notPaid, limits).kind).toBe('wait');
    expect(decideWithdrawalStep(signed(), chain(), notPaid, limits).kind).toBe('wait');
  });
});

describe('withdrawal requests', () => {
  const payer = Wallet.createRandom();
  const request = (overrides: Partial<WithdrawalRequest> = {}): WithdrawalRequest => ({
    from: payer.address,
    to: Wallet.createRandom().address,
    amount: '5',
    idempotencyKey: 'w-key-0001',
    expiresAt: now + 60_000,
    ...overrides,
  });

  const verify = (body: unknown, at = now) => verifiedSignedBody(SignedKind.withdrawal, 'withdrawal', SignedWithdrawalPayloadSchema, body, 600_000, at);

  it('accepts the payer signature of kind withdrawal and refuses anyone else, and any other kind', async () => {
    const body = request();
    await expect(verify({ withdrawal: body, signature: await signRequest(payer, SignedKind.withdrawal, body) })).resolves.toMatchObject({ payload: body });
    const forged = await signRequest(Wallet.createRandom(), SignedKind.withdrawal, body);
    await expect(verify({ withdrawal: body, signature: forged })).rejects.toMatchObject({ code: ErrorCode.EBADSIGNATURE });
    await expect(verify({ withdrawal: body, signature: '0x1234' })).rejects.toMatchObject({ code: ErrorCode.EBADSIGNATURE });
    // The same fields signed as a transfer: one signature is never both.
    await expect(verify({ withdrawal: body, signature: await signRequest(payer, SignedKind.transfer, body) })).rejects.toMatchObject({ code: ErrorCode.EBADSIGNATURE });
  });

  it('verifies over the request as sent (lowercase addresses), and refuses fields the schema does not know', async () => {
    const sent = { ...request(), from: payer.address.toLowerCase() };
    const signature = await signRequest(payer, SignedKind.withdrawal, sent);
    await expect(verify({ withdrawal: sent, signature })).resolves.toMatchObject({ payload: { from: payer.address } });
    // Signed over the checksummed form but sent lowercase: not what was signed.
    const checksummed = await signRequest(payer, SignedKind.withdrawal, { ...sent, from: payer.address });
    await expect(verify({ withdrawal: sent, signature: checksummed })).rejects.toMatchObject({ code: ErrorCode.EBADSIGNATURE });
    const extra = { ...request(), memo: 'not in the schema' };
    // Schema errors leave as EINVAL (400) through the exception filter.
    await expect(verify({ withdrawal: extra, signature: await signRequest(payer, SignedKind.withdrawal, extra) })).rejects.toBeInstanceOf(ZodError);
    await expect(verify({ withdrawal: sent, signature, raw: sent })).rejects.toBeInstanceOf(ZodError);
  });

  it('refuses an expired request and one whose expiry lies too far ahead (EEXPIRED), and bodies too deep (ETOODEEP)', async () => {
    for (const expiresAt of [now, now + 600_001]) {
      const body = request({ expiresAt });
      await expect(verify({ withdrawal: body, signature: await signRequest(payer, SignedKind.withdrawal, body) })).rejects.toMatchObject({ code: ErrorCode.EEXPIRED });
    }
    let deep: unknown = 0;
    for (let i = 0; i < 10_000; i++) deep = [deep];
    await expect(verify({ withdrawal: deep, signature: '0x00' })).rejects.toMatchObject({ code: ErrorCode.ETOODEEP });
  });

  it('refuses another request under a used idempotency key (EREPLAY) and accepts the same one', () => {
    const first = request();
    const stored = record({ requestHash: requestHashOf(first) });
    expect(() => assertSameRequest(stored, requestHashOf({ ...first }))).not.toThrow();
    expect(() => assertSameRequest(stored, requestHashOf({ ...first, amount: '6' }))).toThrow(expect.objectContaining({ code: ErrorCode.EREPLAY }));
  });

  it('gives each withdrawal a random bytes32 id and ledger keys the ledger accepts', () => {
    const a = newWithdrawalId();
    expect(a).toMatch(WithdrawalIdPattern);
    expect(newWithdrawalId()).not.toBe(a);
    for (const key of Object.values(withdrawalKeys(a))) expect(key).toMatch(/^[A-Za-z0-9_:.-]{8,200}$/);
  });

  it('derives the hold expiry from the stored creation time, so every retry sends the same reservation', () => {
    const createdAt = new Date(now);
    expect(withdrawalHoldExpiry(createdAt, 90 * 86_400_000)).toBe(withdrawalHoldExpiry(new Date(now), 90 * 86_400_000));
    expect(withdrawalHoldExpiry(createdAt, 90 * 86_400_000)).toBeLessThan(now + 90 * 86_400_000);
  });

  it('shows a transaction hash only once the node took the transaction', () => {
    expect(toWithdrawalReply(record({ txHash: '0xaa', status: 'pending' })).txHash).toBeNull();
    expect(toWithdrawalReply(signed()).txHash).toBe('0xaa');
  });
});

describe('deposit scanning', () => {
  it('reads only final blocks: never above latest - confirmations', () => {
    expect(nextScanRange({ cursor: null, startBlock: 5, latestBlock: 7, confirmations: 3, maxBlocksPerScan: 100 })).toBeNull();
    expect(nextScanRange({ cursor: null, startBlock: 5, latestBlock: 8, confirmations: 3, maxBlocksPerScan: 100 })).toEqual({ fromBlock: 5, toBlock: 5 });
    expect(nextScanRange({ cursor: 5, startBlock: 5, latestBlock: 8, confirmations: 3, maxBlocksPerScan: 100 })).toBeNull();
    expect(nextScanRange({ cursor: 5, startBlock: 0, latestBlock: 20, confirmations: 3, maxBlocksPerScan: 100 })).toEqual({ fromBlock: 6, toBlock: 17 });
  });

  it('reads at most maxBlocksPerScan blocks at once', () => {
    expect(nextScanRange({ cursor: 0, startBlock: 0, latestBlock: 10_000, confirmations: 0, maxBlocksPerScan: 500 })).toEqual({ fromBlock: 1, toBlock: 500 });
  });

  it('keys each event by chain, transaction and log index', () => {
    expect(depositKey(1337, '0xABCDEF', 2)).toBe('deposit:1337:0xabcdef:2');
    expect(depositKey(1337, '0x' + 'f'.repeat(64), 9999)).toMatch(/^[A-Za-z0-9_:.-]{8,200}$/);
    expect(depositCursorName(1, '0xAbC')).toBe('deposits:1:0xabc');
  });
});

describe('loadBridgeSettings', () => {
  const key = '0x' + '11'.repeat(32);
  const token = '0x' + '22'.repeat(20);
  const vault = '0x' + '33'.repeat(20);

  it('is disabled when no chain is configured, and says why', () => {
    const settings = loadBridgeSettings({});
    expect(settings.enabled).toBe(false);
    expect(settings.confirmations).toBe(3);
  });

  it('is enabled by the three variables, with the default RPC URL', () => {
    const settings = loadBridgeSettings({ BRIDGE_TOKEN_ADDRESS: token, BRIDGE_VAULT_ADDRESS: vault, BRIDGE_OPERATOR_KEY: key, BRIDGE_CONFIRMATIONS: '5' });
    expect(settings).toMatchObject({ enabled: true, confirmations: 5, chain: { rpcUrl: 'http://127.0.0.1:8545', chainId: null, startBlock: 0 } });
  });

  it('reads the local-chain config file; variables set explicitly win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bridge-config-'));
    try {
      const file = join(dir, 'chain.json');
      writeFileSync(file, JSON.stringify({ rpcUrl: 'http://127.0.0.1:9999', chainId: 1337, token, vault, operatorKey: key, startBlock: 4 }));
      const settings = loadBridgeSettings({ BRIDGE_CONFIG_FILE: file, CHAIN_RPC_URL: 'http://10.0.0.1:8545' });
      expect(settings).toMatchObject({ enabled: true, chain: { rpcUrl: 'http://10.0.0.1:8545', chainId: 1337, startBlock: 4 } });
      expect(loadBridgeSettings({ BRIDGE_CONFIG_FILE: file, BRIDGE_ENABLED: 'false' }).enabled).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to boot when enabled without a chain, with a missing config file, or with a bad key', () => {
    expect(() => loadBridgeSettings({ BRIDGE_ENABLED: 'true' })).toThrow(/BRIDGE_ENABLED is true/);
    expect(() => loadBridgeSettings({ BRIDGE_CONFIG_FILE: '/nonexistent/chain.json' })).toThrow(/does not exist/);
    expect(() => loadBridgeSettings({ BRIDGE_OPERATOR_KEY: '0x12' })).toThrow(/BRIDGE_OPERATOR_KEY/);
  });
});
