import { ErrorCode } from '@commune/protocol';
import { ArrayInputSet } from './array-input-set.js';
import { formRange, isRangeLike } from './descriptors.js';
import { maxIterableElements } from './limits.js';
import { RangeObject } from './range-object.js';
import { Distribution } from './distribution.js';
import { MultiRangeObject } from './multi-range-object.js';
import { SparseRangeObject } from './sparse-range-object.js';
import { inputSetFromDescriptor, isMultiRangeArray, toInputSet } from './to-input-set.js';

const codeMatching = (code: string) => expect.objectContaining({ code });

describe(toInputSet.name, () => {
  it('returns a RangeObject as is', () => {
    const range = new RangeObject(0, 5);
    expect(toInputSet(range)).toBe(range);
  });

  it('turns a plain range object into a RangeObject (compute.for form 1)', () => {
    const set = toInputSet({ start: 10, end: 13, step: 2 });
    expect(set).toBeInstanceOf(RangeObject);
    expect([...set.slices()]).toEqual([10, 12]);
  });

  it('turns an array into an ArrayInputSet ([123, 456] form 4 example)', () => {
    const set = toInputSet([123, 456]);
    expect(set).toBeInstanceOf(ArrayInputSet);
    expect([...set.slices()]).toEqual([123, 456]);
  });

  it('snapshots an array so later changes do not leak in', () => {
    const values = [1, 2];
    const set = toInputSet(values);
    values.push(3);
    expect(set.sliceCount).toBe(2);
  });

  it('treats an array whose elements are all range objects as a multi-range object (spec examples 4 and 5)', () => {
    const set = toInputSet([{ start: 1, end: 2 }, new RangeObject(3, 5)]);
    expect(set).toBeInstanceOf(MultiRangeObject);
    expect([...set.slices()]).toEqual([[1, 3], [1, 4], [1, 5], [2, 3], [2, 4], [2, 5]]);
    expect(toInputSet([{ sparse: [{ start: 1, end: 1 }] }, new Distribution({ distribution: 'random', n: 2, parameters: [0, 1], seed: '0'.repeat(16) })])).toBeInstanceOf(MultiRangeObject);
  });

  it('treats any other array as data (form 4): mixed elements, empty arrays, and range objects passed as a non-Array iterable', () => {
    expect(toInputSet([{ start: 1, end: 2 }, 7]).sliceDatum(0)).toEqual({ start: 1, end: 2 });
    expect(toInputSet([]).sliceCount).toBe(0);
    expect(toInputSet([{ start: 1, end: 2 }].values()).sliceDatum(0)).toEqual({ start: 1, end: 2 });
    expect(isMultiRangeArray([[1, 2]])).toBe(false);
  });

  it('turns {ranges: [...]} into a MultiRangeObject (form 3)', () => {
    expect(toInputSet({ ranges: [{ start: 1, end: 2 }] })).toBeInstanceOf(MultiRangeObject);
  });

  it('turns a distribution, as an instance or as plain data, into a Distribution', () => {
    const distribution = new Distribution({ distribution: 'randomInt', n: 3, parameters: [0, 10], seed: '00000000000000ff' });
    expect(toInputSet(distribution)).toBe(distribution);
    const copy = toInputSet(JSON.parse(JSON.stringify(distribution)));
    expect(copy).toBeInstanceOf(Distribution);
    expect([...copy.slices()]).toEqual([...distribution]);
  });

  it('materialises a generator', () => {
    function* colours() {
      yield 'red';
      yield 'green';
      yield { blue: true };
    }
    const set = toInputSet(colours());
    expect(set).toBeInstanceOf(ArrayInputSet);
    expect([...set.slices()]).toEqual(['red', 'green', { blue: true }]);
  });

  it('materialises other iterables', () => {
    expect([...toInputSet(new Set([3, 1])).slices()]).toEqual([3, 1]);
    expect([...toInputSet(new Float64Array([0.5, 2])).slices()]).toEqual([0.5, 2]);
  });

  it('throws ETOOBIG for an endless generator, and closes it', () => {
    let closed = false;
    function* naturals() {
      try {
        for (let n = 0; ; n++) yield n;
      } finally {
        closed = true;
      }
    }
    expect(() => toInputSet(naturals())).toThrow(codeMatching(ErrorCode.ETOOBIG));
    expect(closed).toBe(true);
  });

  it('takes exactly maxIterableElements elements from an iterable', () => {
    function* count(n: number) {
      for (let i = 0; i < n; i++) yield i;
    }
    expect(toInputSet(count(maxIterableElements)).sliceCount).toBe(maxIterableElements);
    expect(() => toInputSet(count(11), { maxIterableElements: 10 })).toThrow(codeMatching(ErrorCode.ETOOBIG));
  });

  it('turns a sparse range object into a SparseRangeObject', () => {
    expect(toInputSet({ sparse: [{ start: 0, end: 1 }] })).toBeInstanceOf(SparseRangeObject);
  });

  it('throws EINVAL from an invalid plain range object', () => {
    expect(() => toInputSet({ start: 0, end: 5, step: 0 })).toThrow(codeMatching(ErrorCode.EINVAL));
  });

  it.each([
    ['a string', 'abc'],
    ['a number', 5],
    ['null', null],
    ['undefined', undefined],
    ['an object that is neither a range nor iterable', { begin: 0, finish: 5 }],
    ['an empty multi-range object', { ranges: [] }],
    ['a nested multi-range object', { ranges: [{ ranges: [{ start: 1, end: 2 }] }] }],
    ['a multi-range object with an array dimension', { ranges: [[1, 2]] }],
    ['a distribution of unknown name', { distribution: 'poisson', n: 3, parameters: [1, 0], seed: '0'.repeat(16) }],
    ['an async generator', (async function* () {})()],
  ])('throws EINVAL for %s', (_what, arg) => {
    expect(() => toInputSet(arg)).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});

describe(inputSetFromDescriptor.name, () => {
  it('recreates a range from its description', () => {
    const original = new RangeObject({ start: 10, end: 13, group: 2 });
    const copy = inputSetFromDescriptor(original.describe());
    expect([...copy.slices()]).toEqual([...original]);
  });

  it('recreates an array input set', () => {
    expect(inputSetFromDescriptor({ kind: 'array', values: [123, 456] }).sliceDatum(1)).toBe(456);
  });

  it('computes slice data lazily for a huge range', () => {
    const set = inputSetFromDescriptor({ kind: 'range', range: { start: 0, end: 1e9 } });
    expect([...set.slices(999_999_999, 1_000_000_001)]).toEqual([999_999_999, 1e9]);
  });

  it('recreates sparse, multi-range and distribution input sets that equal the originals', () => {
    const originals = [
      new SparseRangeObject({ sparse: [{ start: 1, end: 3 }, { start: '0.5', end: 2, step: '0.5', group: 2 }] }),
      new MultiRangeObject({ ranges: [{ start: 1, end: 2 }, { sparse: [{ start: 7, end: 8 }] }, { distribution: 'normalRNG', n: 2, parameters: [0, 1], seed: '0123456789abcdef' }] }),
      new Distribution({ distribution: 'random', n: 50, parameters: [-1, 1], seed: 'fedcba9876543210' }),
    ];
    for (const original of originals) {
      const copy = inputSetFromDescriptor(JSON.parse(JSON.stringify(original.describe())));
      expect(copy).toBeInstanceOf(original.constructor);
      expect([...copy.slices()]).toEqual([...original.slices()]);
    }
  });

  it('throws EINVAL for an unknown kind or a malformed descriptor', () => {
    expect(() => inputSetFromDescriptor({ kind: 'other' } as never)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => inputSetFromDescriptor({ kind: 'sparse' } as never)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => inputSetFromDescriptor({ kind: 'multi', ranges: [{ kind: 'array', values: [1] }] } as never)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => inputSetFromDescriptor({ kind: 'distribution', distribution: 'random', n: 1, parameters: [0, 1], seed: 'x' } as never)).toThrow(
      codeMatching(ErrorCode.EINVAL),
    );
  });
});

describe(formRange.name, () => {
  it('makes 1, 2, 3 from (1, 3) (compute.for form 2b example)', () => {
    expect([...formRange(1, 3)]).toEqual([1, 2, 3]);
  });

  it('uses the step of form 2a', () => {
    expect([...formRange(10, 13, 2)]).toEqual([10, 12]);
  });

  it('throws EINVAL for bad bounds', () => {
    expect(() => formRange(3, 1)).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});

describe(isRangeLike.name, () => {
  it.each([
    [{ start: 0, end: 1 }],
    [{ start: '0.1', end: '1', step: '0.1', group: 2 }],
    [new RangeObject(0, 1)],
  ])('accepts %p', (x) => {
    expect(isRangeLike(x)).toBe(true);
  });

  it.each([[[0, 1]], [null], [{ start: 0 }], [{ start: 0, end: 1, group: '2' }], [{ start: 0n, end: 1n }]])('rejects %p', (x) => {
    expect(isRangeLike(x)).toBe(false);
  });
});
