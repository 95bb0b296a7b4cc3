import { inspect } from 'node:util';
import { ErrorCode } from '@commune/protocol';
import { toInputSet, type InputSet } from '@commune/ranges';
import { createResultHandle, type ResultHandle } from './result-handle.js';

const codeMatching = (code: string) => expect.objectContaining({ code });

/** A handle filled as a finished job would be: slice i holds work(datum i). */
function finished<D>(inputSet: InputSet, work: (datum: D) => unknown): ResultHandle {
  const store = createResultHandle(inputSet, inputSet.sliceCount);
  for (let i = 0; i < inputSet.sliceCount; i++) store.set(i, work(inputSet.sliceDatum(i) as D));
  return store.handle;
}

describe(createResultHandle.name, () => {
  describe('spec example 1: compute.for(1, 3, i => i*10)', () => {
    const results = finished(toInputSet({ start: 1, end: 3 }), (i: number) => i * 10);

    it('prints as a plain array', () => {
      expect(inspect(results)).toBe('[ 10, 20, 30 ]');
      expect(Array.isArray(results)).toBe(true);
      expect(Object.keys(results)).toEqual(['0', '1', '2']);
    });

    it('entries() pairs string keys with values', () => {
      expect(results.entries()).toEqual([
        ['1', 10],
        ['2', 20],
        ['3', 30],
      ]);
      expect(inspect(results.entries())).toBe("[ [ '1', 10 ], [ '2', 20 ], [ '3', 30 ] ]");
    });

    it('fromEntries(), keys() and values()', () => {
      expect(results.fromEntries()).toEqual({ '1': 10, '2': 20, '3': 30 });
      expect(results.keys()).toEqual(['1', '2', '3']);
      expect(results.values()).toEqual([10, 20, 30]);
    });

    it('key(n) is the nth input (keys()[n]), as the spec text says', () => {
      expect(results.key(2)).toBe('3');
      expect(results.key(0)).toBe('1');
      expect(() => results.key(3)).toThrow(codeMatching(ErrorCode.ERANGE));
    });

    it('lookupValue(input) finds the slice by its input, as a number or as its key', () => {
      expect(results.lookupValue(2)).toBe(20);
      expect(results.lookupValue('3')).toBe(30);
      expect(() => results.lookupValue(4)).toThrow(codeMatching(ErrorCode.ERANGE));
      expect(() => results.lookupValue(1.5)).toThrow(codeMatching(ErrorCode.ERANGE));
      expect(() => results.lookupValue('blue')).toThrow(codeMatching(ErrorCode.ERANGE));
    });
  });

  describe('spec example 2: {start: 10, end: 13, step: 2}', () => {
    const results = finished(toInputSet({ start: 10, end: 13, step: 2 }), (i: number) => i);

    it('holds [ 10, 12 ]', () => {
      expect(inspect(results)).toBe('[ 10, 12 ]');
      expect(results.entries()).toEqual([
        ['10', 10],
        ['12', 12],
      ]);
    });

    it('lookupValue() respects the step', () => {
      expect(results.lookupValue(12)).toBe(12);
      expect(() => results.lookupValue(11)).toThrow(codeMatching(ErrorCode.ERANGE));
      expect(() => results.lookupValue(14)).toThrow(codeMatching(ErrorCode.ERANGE));
    });
  });

  describe('spec example 3: {start: 10, end: 13, group: 2}', () => {
    const results = finished(toInputSet({ start: 10, end: 13, group: 2 }), (i: number[]) => i[1] - i[0]);

    it('holds [ 1, 1 ] with the groups as keys', () => {
      expect(inspect(results)).toBe('[ 1, 1 ]');
      expect(results.keys()).toEqual([
        [10, 11],
        [12, 13],
      ]);
      expect(results.entries()).toEqual([
        [[10, 11], 1],
        [[12, 13], 1],
      ]);
    });

    it('fromEntries() leaves out inputs that are not primitive', () => {
      expect(results.fromEntries()).toEqual({});
    });

    it('lookupValue() finds a group by its elements', () => {
      expect(results.lookupValue([12, 13])).toBe(1);
      expect(() => results.lookupValue([11, 12])).toThrow(codeMatching(ErrorCode.ERANGE));
    });
  });

  describe('spec example 6: compute.for([123, 456], i => i)', () => {
    const results = finished(toInputSet([123, 456]), (i: number) => i);

    it('holds [ 123, 456 ]', () => {
      expect(inspect(results)).toBe('[ 123, 456 ]');
      expect(results.entries()).toEqual([
        ['123', 123],
        ['456', 456],
      ]);
      expect(results.key(1)).toBe('456');
      expect(results.lookupValue(456)).toBe(456);
    });
  });

  it('fromEntries() lets the input nearest the end win a key collision', () => {
    const store = createResultHandle(toInputSet(['a', 'b', 'a']), 3);
    [1, 2, 3].forEach((value, i) => store.set(i, value));
    expect(store.handle.fromEntries()).toEqual({ a: 3, b: 2 });
  });

  it('lookupValue() matches object inputs by value', () => {
    const results = finished(toInputSet([{ x: 1 }, { x: 2 }]), (o: { x: number }) => o.x * 2);
    expect(results.lookupValue({ x: 2 })).toBe(4);
  });

  it('methods are not enumerable and do not show when printed', () => {
    const results = finished(toInputSet([1]), (i: number) => i);
    for (const name of ['entries', 'fromEntries', 'keys', 'values', 'key', 'lookupValue', 'fetch']) {
      expect(Object.getOwnPropertyDescriptor(results, name)?.enumerable).toBe(false);
    }
    expect(JSON.stringify(results)).toBe('[1]');
    expect([...results]).toEqual([1]);
  });

  it('a partial handle has holes and lists only what it holds', () => {
    const store = createResultHandle(toInputSet({ start: 0, end: 3 }), 4);
    store.set(2, 'two');
    expect(inspect(store.handle)).toBe("[ <2 empty items>, 'two', <1 empty item> ]");
    expect(store.handle.values()).toEqual(['two']);
    expect(store.handle.entries()).toEqual([['2', 'two']]);
    expect(() => store.handle.lookupValue(1)).toThrow(codeMatching(ErrorCode.ENOTFOUND));
    expect(store.nextMissing(0)).toBe(0);
    expect(store.nextMissing(2)).toBe(3);
  });

  it('keeps the first result of a slice and counts each slice once', () => {
    const store = createResultHandle(toInputSet([1, 2]), 2);
    expect(store.set(0, 'first')).toBe(true);
    expect(store.set(0, 'second')).toBe(false);
    expect(store.set(5, 'outside')).toBe(false);
    expect(store.receivedCount).toBe(1);
    expect(store.handle[0]).toBe('first');
  });

  it('an undefined result still counts as received', () => {
    const store = createResultHandle(toInputSet([1]), 1);
    store.set(0, undefined);
    expect(store.receivedCount).toBe(1);
    expect(store.nextMissing(0)).toBe(-1);
    expect(store.handle.values()).toEqual([undefined]);
  });

  it('key(n) on a huge range does not generate the set', () => {
    const store = createResultHandle(toInputSet({ start: 0, end: 1e9 }), 1e9 + 1);
    expect(store.handle.key(999_999_999)).toBe('999999999');
    expect(store.handle.length).toBe(1e9 + 1);
  });

  it('fetch() without a scheduler job says so', async () => {
    const store = createResultHandle(toInputSet([1]), 1);
    await expect(store.handle.fetch()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
  });
});
