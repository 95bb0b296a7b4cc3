import { ErrorCode, Limits } from '@commune/protocol';
import { Distribution } from './distribution.js';
import { MultiRangeObject } from './multi-range-object.js';
import { RangeObject } from './range-object.js';
import { SparseRangeObject } from './sparse-range-object.js';
import { inputSetFromDescriptor } from './to-input-set.js';

const codeMatching = (code: string) => expect.objectContaining({ code });

describe(MultiRangeObject.name, () => {
  it('is the cartesian product, the leftmost range the outermost loop (spec example 4)', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 1, end: 2 }, { start: 3, end: 5 }] });
    expect(set.sliceCount).toBe(6);
    expect(set.dimensions).toEqual([2, 3]);
    expect([...set]).toEqual([[1, 3], [1, 4], [1, 5], [2, 3], [2, 4], [2, 5]]);
  });

  it('takes an array of ranges and range instances alike', () => {
    expect([...new MultiRangeObject([new RangeObject(1, 2), { start: 3, end: 3 }])]).toEqual([[1, 3], [2, 3]]);
  });

  it('maps slice numbers to coordinates and back', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 0, end: 2 }, { start: 0, end: 3 }, { start: 0, end: 4 }] });
    for (let i = 0; i < set.sliceCount; i++) {
      const coordinates = set.coordinates(i);
      expect(coordinates[0] * 20 + coordinates[1] * 5 + coordinates[2]).toBe(i);
      expect(set.indexOf(set.sliceDatum(i))).toBe(i);
    }
  });

  // Observed from dcp-client 5.6.1 (`require('dcp/range-object').MultiRangeObject`, offline), hard-coded:
  //   {ranges: [{start: 1, end: 2}, {start: 0, end: 1}, {start: 5, end: 6}]}.toArray()
  //     -> [[1,0,5],[1,0,6],[1,1,5],[1,1,6],[2,0,5],[2,0,6],[2,1,5],[2,1,6]]
  //   {ranges: [{start: 1, end: 2}, {start: 10, end: 13, group: 2}]}.toArray() -> [[1,[10,11]],[1,[12,13]],[2,[10,11]],[2,[12,13]]]
  //   {ranges: [{start: 1, end: 3}]}.toArray() -> [[1],[2],[3]]
  //   {ranges: [{start: 1, end: 1e5}, {start: 1, end: 1e4}]}: length 1000000000, nthValue(999999999) -> [100000, 10000]
  it.each([
    [[{ start: 1, end: 2 }, { start: 0, end: 1 }, { start: 5, end: 6 }], [[1, 0, 5], [1, 0, 6], [1, 1, 5], [1, 1, 6], [2, 0, 5], [2, 0, 6], [2, 1, 5], [2, 1, 6]]],
    [[{ start: 1, end: 2 }, { start: 10, end: 13, group: 2 }], [[1, [10, 11]], [1, [12, 13]], [2, [10, 11]], [2, [12, 13]]]],
    [[{ start: 1, end: 3 }], [[1], [2], [3]]],
  ])('gives what dcp-client gives for %j', (ranges, expected) => {
    expect([...new MultiRangeObject({ ranges })]).toEqual(expected);
  });

  it('stays lazy for 10^9 elements: O(ranges) access anywhere, a small descriptor (dcp-client agrees on the last tuple)', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 1, end: 1e5 }, { start: 1, end: 1e4 }] });
    expect(set.sliceCount).toBe(1e9);
    expect(set.sliceDatum(999_999_999)).toEqual([100000, 10000]);
    expect(set.sliceDatum(123_456_789)).toEqual([12346, 6790]);
    expect(JSON.stringify(set.describe()).length).toBeLessThan(200);
    const started = performance.now();
    for (let i = 0; i < 100_000; i++) set.sliceDatum((i * 9_999_991) % 1e9);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('handles products up to 2^53 - 1 slices and refuses more with ETOOBIG', () => {
    const huge = new MultiRangeObject({ ranges: [{ start: 1, end: 2 ** 26 }, { start: 1, end: 2 ** 26 }] });
    expect(huge.sliceCount).toBe(2 ** 52);
    expect(huge.sliceDatum(2 ** 52 - 1)).toEqual([2 ** 26, 2 ** 26]);
    expect(() => new MultiRangeObject({ ranges: [{ start: 1, end: 2 ** 27 }, { start: 1, end: 2 ** 27 }] })).toThrow(codeMatching(ErrorCode.ETOOBIG));
  });

  it('takes sparse ranges and distributions as dimensions', () => {
    const distribution = new Distribution({ distribution: 'randomInt', n: 2, parameters: [0, 100], seed: '000000000000beef' });
    const set = new MultiRangeObject({ ranges: [{ sparse: [{ start: 1, end: 1 }, { start: 9, end: 9 }] }, distribution] });
    expect([...set]).toEqual([[1, distribution.datum(0)], [1, distribution.datum(1)], [9, distribution.datum(0)], [9, distribution.datum(1)]]);
    expect(set.ranges[0]).toBeInstanceOf(SparseRangeObject);
  });

  it('is empty when a distribution dimension is empty', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 1, end: 3 }, new Distribution({ distribution: 'random', n: 0, parameters: [0, 1], seed: '0'.repeat(16) })] });
    expect(set.sliceCount).toBe(0);
    expect([...set]).toEqual([]);
  });

  it('locates an argument tuple in each range (lookupValue support)', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 1, end: 2 }, { start: 3, end: 5 }] });
    expect(set.indexOf([2, 4])).toBe(4);
    expect(set.indexOf(['2', '4'])).toBe(4);
    expect(set.indexOf([3, 4])).toBe(-1);
    expect(set.indexOf([2])).toBe(-1);
    expect(set.indexOf(2)).toBe(-1);
  });

  it('travels as its descriptor and comes back equal', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 1, end: 2 }, { start: '0.1', end: '0.3', step: '0.1' }] });
    expect(set.describe()).toEqual({
      kind: 'multi',
      ranges: [{ kind: 'range', range: { start: 1, end: 2 } }, { kind: 'range', range: { start: '0.1', end: '0.3', step: '0.1' } }],
    });
    expect([...inputSetFromDescriptor(set.describe()).slices()]).toEqual([[1, 0.1], [1, 0.2], [1, 0.3], [2, 0.1], [2, 0.2], [2, 0.3]]);
    expect(JSON.parse(JSON.stringify(set))).toEqual({ ranges: [{ start: 1, end: 2 }, { start: '0.1', end: '0.3', step: '0.1' }] });
  });

  it.each([
    ['no ranges', { ranges: [] }],
    ['a nested multi-range', { ranges: [{ ranges: [{ start: 1, end: 2 }] }] }],
    ['an array dimension', { ranges: [[1, 2]] }],
    ['an invalid range, naming it', { ranges: [{ start: 1, end: 2 }, { start: 5, end: 1 }] }],
    [`more than ${Limits.maxRangesPerMultiRange} ranges`, { ranges: Array.from({ length: Limits.maxRangesPerMultiRange + 1 }, () => ({ start: 1, end: 1 })) }],
  ])('throws EINVAL for %s', (_what, descriptor) => {
    expect(() => new MultiRangeObject(descriptor as never)).toThrow(codeMatching(ErrorCode.EINVAL));
  });

  it('throws ERANGE for a slice outside the set', () => {
    const set = new MultiRangeObject({ ranges: [{ start: 1, end: 2 }] });
    expect(() => set.sliceDatum(2)).toThrow(codeMatching(ErrorCode.ERANGE));
    expect(() => set.coordinates(-1)).toThrow(codeMatching(ErrorCode.ERANGE));
  });
});
