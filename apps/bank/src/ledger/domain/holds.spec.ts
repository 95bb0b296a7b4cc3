import { ErrorCode } from '@commune/protocol';
import { assertHoldOpen, checkHoldExpiry, planPayments, type HoldState } from './holds.js';
import { formatUnits, toUnits, ZERO } from './units.js';

const hold = (remaining: string, overrides: Partial<HoldState> = {}): HoldState => ({
  id: 'h_test',
  accountId: '1',
  ownerAddress: '0xowner',
  escrowAccountId: '2',
  escrowAddress: 'hold:h_test',
  reference: 'j_test',
  amount: toUnits(remaining),
  posted: ZERO,
  remaining: toUnits(remaining),
  status: 'held',
  expiresAt: new Date(Date.now() + 60_000),
  ...overrides,
});
const to = '0x0000000000000000000000000000000000000001';

describe(planPayments.name, () => {
  it('pays each key once: repeats in the batch and keys paid before are alreadyPaid', () => {
    const plan = planPayments(
      hold('100'),
      [{ key: 'job:1', to, amount: '10' }, { key: 'job:1', to, amount: '10' }, { key: 'job:2', to, amount: '20' }, { key: 'job:3', to, amount: '30' }],
      toUnits('1'),
      new Set(['job:3']),
    );
    expect(plan.fresh.map((payment) => payment.key)).toEqual(['job:1', 'job:2']);
    expect(plan.alreadyPaid).toBe(2);
    expect(formatUnits(plan.fees)).toBe('2');
    expect(formatUnits(plan.total)).toBe('32');
  });

  it('refuses the whole batch (ENOFUNDS) when it needs more than remains, fees included', () => {
    expect(() => planPayments(hold('21'), [{ key: 'job:1', to, amount: '10' }, { key: 'job:2', to, amount: '10' }], toUnits('1'), new Set())).toThrow(
      expect.objectContaining({ code: ErrorCode.ENOFUNDS }),
    );
    expect(formatUnits(planPayments(hold('22'), [{ key: 'job:1', to, amount: '10' }, { key: 'job:2', to, amount: '10' }], toUnits('1'), new Set()).total)).toBe('22');
  });
});

describe(assertHoldOpen.name, () => {
  it('refuses released, expired and overdue holds with EHOLDCLOSED', () => {
    expect(() => assertHoldOpen(hold('1', { status: 'released' }), Date.now())).toThrow(expect.objectContaining({ code: ErrorCode.EHOLDCLOSED }));
    expect(() => assertHoldOpen(hold('1', { expiresAt: new Date(Date.now() - 1) }), Date.now())).toThrow(expect.objectContaining({ code: ErrorCode.EHOLDCLOSED }));
    expect(() => assertHoldOpen(hold('1'), Date.now())).not.toThrow();
  });
});

describe(checkHoldExpiry.name, () => {
  it('accepts an expiry in the future within the lifetime', () => {
    const now = Date.now();
    expect(checkHoldExpiry(now + 1000, now, 5000).getTime()).toBe(now + 1000);
    expect(() => checkHoldExpiry(now, now, 5000)).toThrow(expect.objectContaining({ code: ErrorCode.EINVAL }));
    expect(() => checkHoldExpiry(now + 5001, now, 5000)).toThrow(expect.objectContaining({ code: ErrorCode.EINVAL }));
  });
});
