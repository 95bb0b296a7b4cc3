import { ErrorCode } from '@commune/protocol';
import { planPosting, simpleLegs, type AccountState } from './posting.js';
import { formatUnits, toUnits } from './units.js';

const account = (id: string, balance: string, allowNegative = false): AccountState => ({ id, address: `0x${id}`, kind: allowNegative ? 'bridge' : 'user', balance: toUnits(balance), allowNegative });

describe(planPosting.name, () => {
  it('applies legs in order and reports each balance after', () => {
    const accounts = new Map([['1', account('1', '100')], ['2', account('2', '5')]]);
    const posting = planPosting(accounts, simpleLegs(accounts.get('1')!, accounts.get('2')!, toUnits('40'), 'transfer', null));
    expect(posting.entries.map((entry) => [entry.accountId, formatUnits(entry.amount), formatUnits(entry.balanceAfter)])).toEqual([
      ['1', '-40', '60'],
      ['2', '40', '45'],
    ]);
    expect(formatUnits(posting.balances.get('1')!)).toBe('60');
  });

  it('refuses with ENOFUNDS when an account would go below zero', () => {
    const accounts = new Map([['1', account('1', '10')], ['2', account('2', '0')]]);
    expect(() => planPosting(accounts, simpleLegs(accounts.get('1')!, accounts.get('2')!, toUnits('11'), 'transfer', null))).toThrow(
      expect.objectContaining({ code: ErrorCode.ENOFUNDS }),
    );
  });

  it('lets an account that may go negative (the bridge) go negative', () => {
    const accounts = new Map([['1', account('1', '0', true)], ['2', account('2', '0')]]);
    const posting = planPosting(accounts, simpleLegs(accounts.get('1')!, accounts.get('2')!, toUnits('7'), 'deposit', null));
    expect(formatUnits(posting.balances.get('1')!)).toBe('-7');
  });

  it('keeps 78-digit amounts exact', () => {
    const big = '9'.repeat(77);
    const accounts = new Map([['1', account('1', big)], ['2', account('2', '1')]]);
    const posting = planPosting(accounts, simpleLegs(accounts.get('1')!, accounts.get('2')!, toUnits(big), 'transfer', null));
    expect(formatUnits(posting.balances.get('2')!)).toBe('1' + '0'.repeat(77));
    expect(formatUnits(posting.balances.get('1')!)).toBe('0');
  });

  it('throws on legs that do not sum to zero (a bug, not a refusal)', () => {
    const accounts = new Map([['1', account('1', '10')], ['2', account('2', '0')]]);
    const legs = simpleLegs(accounts.get('1')!, accounts.get('2')!, toUnits('1'), 'transfer', null);
    legs[1] = { ...legs[1]!, amount: toUnits('2') };
    expect(() => planPosting(accounts, legs)).toThrow(/sum to zero/);
  });
});

describe(toUnits.name, () => {
  it('refuses fractions and numbers beyond 78 digits', () => {
    expect(() => toUnits('1.5')).toThrow(RangeError);
    expect(() => toUnits('1' + '0'.repeat(78))).toThrow(RangeError);
    expect(formatUnits(toUnits('007'))).toBe('7');
  });
});
