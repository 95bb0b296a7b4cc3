import { dccToUnits, escrowFor, slicePayment, unitsToDcc } from './pricing.js';

const policy = { marketRateUnitsPerSecond: dccToUnits('0.001'), minimumSliceUnits: dccToUnits('0.000001') };

describe('pricing', () => {
  it('converts DCC to smallest units exactly', () => {
    expect(dccToUnits('0.0001465376')).toBe('146537600000000');
    expect(dccToUnits('1')).toBe('1000000000000000000');
    expect(unitsToDcc('146537600000000')).toBe('0.0001465376');
  });
  it('refuses more than 18 decimals and negative amounts', () => {
    expect(() => dccToUnits('0.0000000000000000001')).toThrow(/decimals/);
    expect(() => dccToUnits('-1')).toThrow(/not a DCC amount/);
  });
  it('prices a slice by its measured time at the market rate', () => {
    expect(slicePayment(dccToUnits('1'), 2000, policy)).toBe(dccToUnits('0.002'));
  });
  it('never pays above the offer', () => {
    expect(slicePayment(dccToUnits('0.0005'), 2000, policy)).toBe(dccToUnits('0.0005'));
  });
  it('pays at least the floor for very short slices', () => {
    expect(slicePayment(dccToUnits('1'), 0, policy)).toBe(dccToUnits('0.000001'));
  });
  it('escrows the offer times the slices', () => {
    expect(escrowFor(dccToUnits('0.5'), 3)).toBe(dccToUnits('1.5'));
  });
});
