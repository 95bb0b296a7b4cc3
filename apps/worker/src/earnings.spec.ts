import { describe, expect, it, jest } from '@jest/globals';
import { describeEarnings, Earnings, unitsToDcc } from './earnings.js';

const address = '0x52908400098527886E0F7030069857D2E4169EE7';
const dcc = (text: string) => (BigInt(Math.round(Number(text) * 1e6)) * 10n ** 12n).toString();

/** A bank that answers GET /accounts/:address with `balances` in turn, and a clock the test moves. */
function setup(...answers: Array<string | Error | { status: number; body: unknown }>) {
  const requested: string[] = [];
  let clock = 1_000_000;
  const fakeFetch = jest.fn(async (input: string | URL | Request) => {
    requested.push(String(input));
    const answer = answers.length > 1 ? answers.shift()! : answers[0]!;
    if (answer instanceof Error) throw answer;
    if (typeof answer === 'string') return new Response(JSON.stringify({ address, balance: dcc(answer) }), { status: 200 });
    return new Response(JSON.stringify(answer.body), { status: answer.status });
  });
  const earnings = new Earnings({ bank: 'http://bank.test:4100/', address, fetch: fakeFetch as typeof fetch, now: () => clock });
  return { earnings, requested, advance: (ms: number) => (clock += ms) };
}

describe(unitsToDcc.name, () => {
  it('writes smallest units as DCC, exactly', () => {
    expect(unitsToDcc(0n)).toBe('0');
    expect(unitsToDcc(1n)).toBe('0.000000000000000001');
    expect(unitsToDcc(1_500_000_000_000_000_000n)).toBe('1.5');
    expect(unitsToDcc(-250_000_000_000_000_000n)).toBe('-0.25');
    expect(unitsToDcc(123_456_789_000_000_000_000_000_000n)).toBe('123456789');
  });
});

describe(Earnings.name, () => {
  it('reads GET {bank}/accounts/{earnings}; the first balance is the baseline of the change', async () => {
    const { earnings, requested } = setup('1.5');
    expect(earnings.latest()).toBeUndefined();
    expect(await earnings.refresh()).toEqual({ balance: '1.5', change: '+0', balanceUnits: dcc('1.5'), changeUnits: '0' });
    expect(requested).toEqual([`http://bank.test:4100/accounts/${address}`]);
    expect(describeEarnings(earnings)).toBe('earnings 1.5 DCC (+0 since start)');
  });

  it('asks the bank at most every 10 s', async () => {
    const { earnings, requested, advance } = setup('1.5', '1.75', '1');
    await earnings.refresh();
    advance(9_999);
    expect(await earnings.refresh()).toMatchObject({ balance: '1.5' });
    expect(requested).toHaveLength(1);
    advance(1);
    expect(await earnings.refresh()).toMatchObject({ balance: '1.75', change: '+0.25' });
    advance(10_000);
    expect(await earnings.refresh()).toMatchObject({ balance: '1', change: '-0.5', changeUnits: '-' + dcc('0.5') });
    expect(requested).toHaveLength(3);
  });

  it('shares one request between callers while it is in flight', async () => {
    const { earnings, requested } = setup('2');
    const [a, b] = await Promise.all([earnings.refresh(), earnings.refresh()]);
    expect(a).toEqual(b);
    expect(requested).toHaveLength(1);
  });

  it('keeps the last balance when the bank cannot be read, and says why', async () => {
    const { earnings, advance } = setup('1', new TypeError('fetch failed'), { status: 500, body: { ok: false, code: 'EBANK', message: 'database down' } }, { status: 200, body: { nope: 1 } });
    await earnings.refresh();
    advance(10_000);
    expect(await earnings.refresh()).toMatchObject({ balance: '1' });
    expect(describeEarnings(earnings)).toBe('earnings 1 DCC (+0 since start) (stale: fetch failed)');
    advance(10_000);
    await earnings.refresh();
    expect(earnings.lastError).toBe('the bank answered 500: database down');
    advance(10_000);
    await earnings.refresh();
    expect(earnings.lastError).toBe('the bank sent a malformed account');
  });

  it('says "unknown" before the first successful read', async () => {
    const { earnings } = setup(new TypeError('connect ECONNREFUSED'));
    expect(await earnings.refresh()).toBeUndefined();
    expect(describeEarnings(earnings)).toBe('earnings unknown (connect ECONNREFUSED)');
  });
});
