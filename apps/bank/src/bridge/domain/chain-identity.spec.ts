import { IdempotencyKeySchema } from '@commune/protocol';
import { depositLedgerKey, judgeChain, withOrdinals, type ChainIdentity, type RecordedChain } from './chain-identity.js';
import { depositKey } from './deposits.js';

const genesisA = '0x' + 'aa'.repeat(32);
const genesisB = '0x' + 'bb'.repeat(32);
const vault = '0x' + '33'.repeat(20);
const node = (overrides: Partial<ChainIdentity> = {}): ChainIdentity => ({ chainId: 1337, genesisHash: genesisA, vault, ...overrides });
const recorded = (overrides: Partial<RecordedChain> = {}): RecordedChain => ({ ...node(), depositKeys: 'chain', resets: 0, ...overrides });
const none = { kind: 'none' as const };

describe('judgeChain', () => {
  it('goes on with the recorded chain', () => {
    expect(judgeChain(recorded(), node(), false, none)).toEqual({ kind: 'same' });
    expect(judgeChain(recorded(), node(), true, none)).toEqual({ kind: 'same' });
  });

  it('records the first chain of a new bank with genesis-qualified deposit keys', () => {
    expect(judgeChain(null, node(), false, none)).toEqual({ kind: 'record', depositKeys: 'chain', adoptLegacy: false });
  });

  it('takes over the state of a bank upgraded in place when its last final block is still on the chain, keeping its deposit keys', () => {
    const legacy = { kind: 'block' as const, blockNumber: 9, stillCanonical: true };
    expect(judgeChain(null, node(), false, legacy)).toEqual({ kind: 'record', depositKeys: 'legacy', adoptLegacy: true });
    expect(judgeChain(null, node(), true, legacy)).toEqual({ kind: 'record', depositKeys: 'legacy', adoptLegacy: true });
  });

  it("drops an upgraded bank's state about a dev chain that is gone (the 'block 9 was final' loop), and takes it over on a real chain", () => {
    const legacy = { kind: 'block' as const, blockNumber: 9, stillCanonical: false };
    expect(judgeChain(null, node(), true, legacy)).toMatchObject({ kind: 'reset', reason: expect.stringContaining('block 9') });
    expect(judgeChain(null, node(), false, legacy)).toEqual({ kind: 'record', depositKeys: 'legacy', adoptLegacy: true });
  });

  it('resets for a new dev chain and stops on any other chain: another genesis or another chain id', () => {
    for (const other of [node({ genesisHash: genesisB }), node({ chainId: 31337 })]) {
      expect(judgeChain(recorded(), other, true, none)).toMatchObject({ kind: 'reset' });
      expect(judgeChain(recorded(), other, false, none)).toMatchObject({ kind: 'halt', reason: expect.stringContaining(genesisA) });
    }
  });

  it('records a new vault on the same chain without resetting anything', () => {
    expect(judgeChain(recorded(), node({ vault: '0x' + '44'.repeat(20) }), true, none)).toEqual({ kind: 'new-vault' });
    expect(judgeChain(recorded(), node({ vault: vault.toUpperCase().replace('0X', '0x') }), false, none)).toEqual({ kind: 'same' });
  });
});

describe('deposit ledger keys', () => {
  const event = { chainId: 1337, genesisHash: genesisA.toUpperCase().replace('0X', '0x'), transactionHash: '0x' + 'F'.repeat(64), logIndex: 7, ordinal: 1 };

  it('keeps the key banks used before identities on a chain they had credited deposits on', () => {
    expect(depositLedgerKey('legacy', event)).toBe(depositKey(1337, event.transactionHash, 7));
  });

  it('names the genesis and the ordinal (not the log index) otherwise, and fits the ledger', () => {
    expect(depositLedgerKey('chain', event)).toBe(`deposit:1337:${genesisA}:0x${'f'.repeat(64)}:1`);
    expect(depositLedgerKey('chain', { ...event, logIndex: 99 })).toBe(depositLedgerKey('chain', event));
    expect(depositLedgerKey('chain', { ...event, genesisHash: genesisB })).not.toBe(depositLedgerKey('chain', event));
    const longest = depositLedgerKey('chain', { ...event, chainId: Number.MAX_SAFE_INTEGER, ordinal: 99_999 });
    expect(IdempotencyKeySchema.safeParse(longest).success).toBe(true);
  });
});

describe('withOrdinals', () => {
  it("numbers each transaction's deposits in order, whatever their log indexes", () => {
    const events = [
      { transactionHash: '0x01', logIndex: 1 },
      { transactionHash: '0x02', logIndex: 3 },
      { transactionHash: '0x01', logIndex: 5 },
      { transactionHash: '0X02', logIndex: 9 },
    ];
    expect(withOrdinals(events).map(({ event, ordinal }) => [event.logIndex, ordinal])).toEqual([
      [1, 0],
      [3, 0],
      [5, 1],
      [9, 1],
    ]);
  });
});
