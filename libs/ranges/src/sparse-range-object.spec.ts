import { ErrorCode, Limits } from '@commune/protocol';
import { RangeObject } from './range-object.js';
import { SparseRangeObject } from './sparse-range-object.js';

describe(SparseRangeObject.name, () => {
  it('concatenates the slices of its ranges', () => {
    const set = new SparseRangeObject({ sparse: [{ start: 1, end: 3 }, { start: 10, end: 13, step: 2 }] });
    expect(set.sliceCount).toBe(5);
    expect([...set]).toEqual([1, 2, 3, 10, 12]);
  });

  it('keeps each range its own group', () => {
    const set = new SparseRangeObject({ sparse: [{ start: 1, end: 3, group: 2 }, new RangeObject(7, 8)] });
    expect([...set]).toEqual([[1, 2], [3], 7, 8]);
  });

  it('finds slice i in the right range among many', () => {
    const parts = Array.from({ length: 40 }, (_, k) => ({ start: k * 100, end: k * 100 + (k % 7), step: 1 }));
    const set = new SparseRangeObject({ sparse: parts });
    const expected = parts.flatMap((part) => [...new RangeObject(part)]);
    expect(Array.from({ length: set.sliceCount }, (_, i) => set.sliceDatum(i))).toEqual(expected);
  });

  it('throws EINVAL for a nested sparse range object', () => {
    expect(() => new SparseRangeObject({ sparse: [{ sparse: [{ start: 0, end: 1 }] } as never] })).toThrow(
      expect.objectContaining({ code: ErrorCode.EINVAL }),
    );
  });

  it('throws EINVAL for an empty list of ranges', () => {
    expect(() => new SparseRangeObject({ sparse: [] })).toThrow(expect.objectContaining({ code: ErrorCode.EINVAL }));
  });

  it('throws EINVAL for an invalid part, naming it', () => {
    expect(() => new SparseRangeObject({ sparse: [{ start: 0, end: 1 }, { start: 5, end: 1 }] })).toThrow(/descends/);
    expect(() => new SparseRangeObject({ sparse: [{ start: 0, end: 1 }, 'x' as never] })).toThrow(/sparse\[1\]/);
  });

  it('throws ERANGE for a slice index outside the set', () => {
    const set = new SparseRangeObject({ sparse: [{ start: 0, end: 1 }] });
    expect(() => set.sliceDatum(2)).toThrow(expect.objectContaining({ code: ErrorCode.ERANGE }));
  });

  it('travels as its range descriptors, not as its slice data', () => {
    const set = new SparseRangeObject({ sparse: [{ start: 0, end: 1 }, { start: 5, end: 6, group: 2 }] });
    expect(set.describe()).toEqual({ kind: 'sparse', sparse: [{ start: 0, end: 1 }, { start: 5, end: 6, group: 2 }] });
  });

  it('stays lazy for 10^9 elements: a small descriptor and O(log ranges) access at the far end', () => {
    const set = new SparseRangeObject({ sparse: [{ start: 0, end: 5e8 - 1 }, { start: 1e12, end: 1e12 + 5e8 - 1 }] });
    expect(set.sliceCount).toBe(1e9);
    expect(JSON.stringify(set.describe()).length).toBeLessThan(200);
    expect(set.sliceDatum(5e8 - 1)).toBe(5e8 - 1);
    expect(set.sliceDatum(5e8)).toBe(1e12);
    expect(set.sliceDatum(1e9 - 1)).toBe(1e12 + 5e8 - 1);
  });

  it('locates an input arithmetically, the first range holding it winning', () => {
    const set = new SparseRangeObject({ sparse: [{ start: 1, end: 3 }, { start: 2, end: 1e9 }, { start: 10, end: 13, group: 2 }] });
    expect(set.indexOf(2)).toBe(1);
    expect(set.indexOf('5')).toBe(3 + 3);
    expect(set.indexOf(1e9)).toBe(3 + 1e9 - 2);
    expect(set.indexOf([12, 13])).toBe(3 + (1e9 - 1) + 1);
    expect(set.indexOf(0)).toBe(-1);
    expect(set.indexOf([12])).toBe(-1);
  });

  it(`throws EINVAL beyond Limits.maxRangesPerSparseRange (${Limits.maxRangesPerSparseRange}) ranges`, () => {
    const parts = Array.from({ length: Limits.maxRangesPerSparseRange + 1 }, (_, k) => ({ start: k, end: k }));
    expect(() => new SparseRangeObject({ sparse: parts })).toThrow(expect.objectContaining({ code: ErrorCode.EINVAL }));
    expect(new SparseRangeObject({ sparse: parts.slice(1) }).sliceCount).toBe(Limits.maxRangesPerSparseRange);
  });

  // Observed from dcp-client 5.6.1 (`require('dcp/range-object').SparseRangeObject`, offline), hard-coded:
  // new SparseRangeObject({sparse: [{start: 1, end: 3}, {start: 10, end: 14, step: 2}]}).toArray() -> [1, 2, 3, 10, 12, 14]
  // ...{sparse: [{start: 1, end: 3, group: 2}, {start: 10, end: 14, step: 2, group: 2}]} -> [[1, 2], [3], [10, 12], [14]]
  // ...{sparse: [{start: 1, end: 3}, {start: 2, end: 4}]} (overlapping) -> [1, 2, 3, 2, 3, 4]
  it.each([
    [[{ start: 1, end: 3 }, { start: 10, end: 14, step: 2 }], [1, 2, 3, 10, 12, 14]],
    [[{ start: 1, end: 3, group: 2 }, { start: 10, end: 14, step: 2, group: 2 }], [[1, 2], [3], [10, 12], [14]]],
    [[{ start: 1, end: 3 }, { start: 2, end: 4 }], [1, 2, 3, 2, 3, 4]],
  ])('gives what dcp-client gives for %j', (sparse, expected) => {
    expect([...new SparseRangeObject({ sparse })]).toEqual(expected);
  });

  it('serialises to its sparse descriptor', () => {
    expect(JSON.parse(JSON.stringify(new SparseRangeObject({ sparse: [{ start: '0.5', end: 2 }] })))).toEqual({
      sparse: [{ start: '0.5', end: 2 }],
    });
  });
});
