import { JobSpecSchema, Limits } from '@commune/protocol';
import { checkJobSpec, type JobLimits } from './job-limits.js';

const limits: JobLimits = { maxWorkBytes: 1000, maxInputSetBytes: 200, maxSlicesPerJob: 1_000_000, maxSignatureLifetimeMs: Limits.maxSignatureLifetimeMs, bankEnabled: false };
const now = 1_800_000_000_000;
const spec = (overrides: Record<string, unknown> = {}) =>
  JobSpecSchema.parse({
    owner: '0x000000000000000000000000000000000000dEaD',
    work: '(x) => x',
    inputSet: { kind: 'range', range: { start: 0, end: 9 } },
    nonce: 'nonce-0001',
    issuedAt: now,
    expiresAt: now + 60_000,
    ...overrides,
  });
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return 'no error';
};

describe(checkJobSpec.name, () => {
  it('returns the input set of a valid job', () => {
    expect(checkJobSpec(spec(), limits, now).sliceCount).toBe(10);
  });
  it('refuses an expired request with EEXPIRED', () => {
    expect(codeOf(() => checkJobSpec(spec({ expiresAt: now - 1 }), limits, now))).toBe('EEXPIRED');
  });
  it('refuses an expiry beyond maxSignatureLifetimeMs with EEXPIRED', () => {
    expect(codeOf(() => checkJobSpec(spec({ expiresAt: now + Limits.maxSignatureLifetimeMs + 1 }), limits, now))).toBe('EEXPIRED');
  });
  it('counts work and arguments against maxWorkBytes (EWORKTOOBIG)', () => {
    expect(codeOf(() => checkJobSpec(spec({ arguments: ['x'.repeat(1000)] }), limits, now))).toBe('EWORKTOOBIG');
  });
  it('counts module sources against maxWorkBytes too (EWORKTOOBIG): the spec\'s "work function and local modules"', () => {
    const modules = (bytes: number) => ({ main: { './m': 'm.js' }, files: [{ id: 'm.js', source: 'x'.repeat(bytes), requires: {} }] });
    expect(checkJobSpec(spec({ modules: modules(500) }), limits, now).sliceCount).toBe(10);
    expect(codeOf(() => checkJobSpec(spec({ modules: modules(990) }), limits, now))).toBe('EWORKTOOBIG');
  });
  it('refuses a module table naming a module it does not carry (schema)', () => {
    expect(() => spec({ modules: { main: { './m': 'gone.js' }, files: [{ id: 'm.js', source: '', requires: {} }] } })).toThrow(/not in the job/);
  });
  it('refuses a paid offer with ENOBANK', () => {
    expect(codeOf(() => checkJobSpec(spec({ slicePaymentOffer: '0.5' }), limits, now))).toBe('ENOBANK');
  });
  it('accepts a paid offer when the scheduler has a bank', () => {
    expect(checkJobSpec(spec({ slicePaymentOffer: '0.5' }), { ...limits, bankEnabled: true }, now).sliceCount).toBe(10);
  });
  it('refuses an offer finer than the smallest unit with EINVAL', () => {
    expect(codeOf(() => checkJobSpec(spec({ slicePaymentOffer: '0.0000000000000000001' }), { ...limits, bankEnabled: true }, now))).toBe('EINVAL');
  });
  it('accepts "0.0" as free computation', () => {
    expect(checkJobSpec(spec({ slicePaymentOffer: '0.0' }), limits, now).sliceCount).toBe(10);
  });
  it('refuses an array input set over maxInputSetBytes with ETOOBIG', () => {
    expect(codeOf(() => checkJobSpec(spec({ inputSet: { kind: 'array', values: ['y'.repeat(300)] } }), limits, now))).toBe('ETOOBIG');
  });
  it('refuses more slices than maxSlicesPerJob with ETOOMANYTASKS', () => {
    expect(codeOf(() => checkJobSpec(spec({ inputSet: { kind: 'range', range: { start: 0, end: 1e7 } } }), limits, now))).toBe('ETOOMANYTASKS');
  });
  it('refuses a malformed range with EINVAL', () => {
    expect(codeOf(() => checkJobSpec(spec({ inputSet: { kind: 'range', range: { start: 0, end: 5, step: -1 } } }), limits, now))).toBe('EINVAL');
  });
});
