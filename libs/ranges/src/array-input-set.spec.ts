import { CommuneError, ErrorCode } from '@commune/protocol';
import { ArrayInputSet } from './array-input-set.js';

describe(ArrayInputSet.name, () => {
  it('has one slice per value, in order ([123, 456] example)', () => {
    const set = new ArrayInputSet([123, 456]);
    expect(set.sliceCount).toBe(2);
    expect(set.length).toBe(2);
    expect([...set]).toEqual([123, 456]);
  });

  it('returns values[i] from datum, sliceDatum and key', () => {
    const set = new ArrayInputSet(['a', { b: 1 }, [2]]);
    expect(set.datum(1)).toEqual({ b: 1 });
    expect(set.sliceDatum(2)).toEqual([2]);
    expect(set.key(0)).toBe('a');
  });

  it('finds the first index of an input: primitives by their string form, objects by canonical JSON', () => {
    const set = new ArrayInputSet([1, 'blue', { b: 1, a: 2 }, 1, null]);
    expect(set.indexOf(1)).toBe(0);
    expect(set.indexOf('1')).toBe(0);
    expect(set.indexOf('blue')).toBe(1);
    expect(set.indexOf({ a: 2, b: 1 })).toBe(2);
    expect(set.indexOf(null)).toBe(4);
    expect(set.indexOf('red')).toBe(-1);
  });

  it('gives a window of slices', () => {
    expect([...new ArrayInputSet([1, 2, 3, 4]).slices(1, 3)]).toEqual([2, 3]);
  });

  it('allows an empty set', () => {
    expect(new ArrayInputSet([]).sliceCount).toBe(0);
  });

  it('throws ERANGE for an index outside the array', () => {
    const set = new ArrayInputSet([1]);
    expect(() => set.sliceDatum(1)).toThrow(CommuneError);
    expect(() => set.sliceDatum(1)).toThrow(expect.objectContaining({ code: ErrorCode.ERANGE }));
  });

  it('throws EINVAL when not given an array', () => {
    expect(() => new ArrayInputSet('abc' as never)).toThrow(expect.objectContaining({ code: ErrorCode.EINVAL }));
  });

  it('describes itself as an array input set', () => {
    expect(new ArrayInputSet([1, 'x']).describe()).toEqual({ kind: 'array', values: [1, 'x'] });
  });
});
