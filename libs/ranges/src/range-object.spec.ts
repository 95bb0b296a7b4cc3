import { BigNumber } from 'bignumber.js';
import { CommuneError, ErrorCode, InputSetSchema } from '@commune/protocol';
import { RangeObject } from './range-object.js';
import { seededRandom } from '../../../test/support/random.js';

/** The CommuneError code fn throws, or 'no error'. */
function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    if (error instanceof CommuneError) return error.code;
    throw error;
  }
  return 'no error';
}

describe(RangeObject.name, () => {
  describe('spec examples', () => {
    it('yields 1, 2, 3 for {start: 1, end: 3} (compute.for form 2b example)', () => {
      expect([...new RangeObject({ start: 1, end: 3 })]).toEqual([1, 2, 3]);
    });

    it('stops at the last element not past end: {start: 10, end: 13, step: 2} is [10, 12]', () => {
      expect([...new RangeObject({ start: 10, end: 13, step: 2 })]).toEqual([10, 12]);
    });

    it('ends {start: 0, end: 1000, step: 3} at 999', () => {
      const range = new RangeObject({ start: 0, end: 1000, step: 3 });
      expect(range.length).toBe(334);
      expect(range.datum(range.length - 1)).toBe(999);
    });

    it('groups {start: 10, end: 13, group: 2} into [10, 11] and [12, 13]', () => {
      const range = new RangeObject({ start: 10, end: 13, group: 2 });
      expect([...range]).toEqual([
        [10, 11],
        [12, 13],
      ]);
      // The spec's work function i => i[1] - i[0] gives [1, 1].
      expect([...range].map((i) => (i as number[])[1] - (i as number[])[0])).toEqual([1, 1]);
    });
  });

  describe('construction', () => {
    it('accepts positional arguments like the descriptor form', () => {
      const positional = new RangeObject(10, 13, 2, 1);
      expect(positional.toJSON()).toEqual({ start: 10, end: 13, step: 2, group: 1 });
      expect([...positional]).toEqual([...new RangeObject({ start: 10, end: 13, step: 2, group: 1 })]);
    });

    it('defaults step to 1', () => {
      expect([...new RangeObject(-2, 2)]).toEqual([-2, -1, 0, 1, 2]);
    });

    it('has one element when start equals end', () => {
      expect([...new RangeObject(7, 7)]).toEqual([7]);
    });

    it('accepts decimal strings, including exponent notation', () => {
      expect([...new RangeObject('1e1', '1.2e1', '0.5')]).toEqual([10, 10.5, 11, 11.5, 12]);
    });

    it('treats -0 as 0', () => {
      expect(Object.is(new RangeObject(-0, 2).datum(0), 0)).toBe(true);
      expect(Object.is(new RangeObject(-0, -2, -1).datum(0), 0)).toBe(true);
    });
  });

  describe('decimal exactness', () => {
    it('yields 0, 0.1, ..., 1 exactly for {start: 0, end: 1, step: 0.1}', () => {
      expect([...new RangeObject({ start: 0, end: 1, step: 0.1 })]).toEqual([0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    });

    it('includes end when it is reached exactly in decimal but not in binary floating point', () => {
      // In doubles 0.1 * 3 > 0.3, which would drop the last element.
      expect([...new RangeObject(0, 0.3, 0.1)]).toEqual([0, 0.1, 0.2, 0.3]);
    });

    it('is exact for decimal-string ranges', () => {
      const range = new RangeObject({ start: '0.1', end: '0.7', step: '0.2' });
      expect([...range]).toEqual([0.1, 0.3, 0.5, 0.7]);
    });

    it('is exact with more decimal places than the fast path handles', () => {
      const range = new RangeObject(0, '1e-23', '1e-25');
      expect(range.length).toBe(101);
      expect(range.datum(3)).toBe(3e-25);
    });

    it('counts exactly beyond the safe-integer range and returns the nearest double', () => {
      // 1e20 + 0.5 is not a double: the count is exact, each datum is rounded once.
      const range = new RangeObject('100000000000000000000', '100000000000000000010', '0.5');
      expect(range.length).toBe(21);
      expect(range.datum(20)).toBe(Number('100000000000000000010'));
    });
  });

  describe('descending ranges', () => {
    it('counts down with a negative step', () => {
      expect([...new RangeObject({ start: 5, end: 1, step: -1 })]).toEqual([5, 4, 3, 2, 1]);
    });

    it('applies the step-overflow rule downwards', () => {
      expect([...new RangeObject({ start: 10, end: 5, step: -2 })]).toEqual([10, 8, 6]);
    });

    it('is exact with a negative decimal step', () => {
      expect([...new RangeObject(1, 0, -0.25)]).toEqual([1, 0.75, 0.5, 0.25, 0]);
    });
  });

  describe('groups', () => {
    it('gives arrays even when group is 1', () => {
      expect([...new RangeObject({ start: 1, end: 3, group: 1 })]).toEqual([[1], [2], [3]]);
    });

    it('makes the last group shorter when the count is not a multiple of group', () => {
      const range = new RangeObject({ start: 1, end: 5, group: 2 });
      expect(range.sliceCount).toBe(3);
      expect([...range]).toEqual([[1, 2], [3, 4], [5]]);
    });

    it('groups the elements of a stepped range', () => {
      expect([...new RangeObject({ start: 0, end: 10, step: 2, group: 2 })]).toEqual([
        [0, 2],
        [4, 6],
        [8, 10],
      ]);
    });

    it('keeps length as the element count and datum(i) as element i', () => {
      const range = new RangeObject({ start: 0, end: 10, step: 2, group: 4 });
      expect(range.length).toBe(6);
      expect(range.sliceCount).toBe(2);
      expect(range.datum(5)).toBe(10);
    });

    it('returns the group array as key(i)', () => {
      expect(new RangeObject({ start: 10, end: 13, group: 2 }).key(1)).toEqual([12, 13]);
    });
  });

  describe('large ranges', () => {
    const huge = new RangeObject({ start: 0, end: 1e9 });

    it('computes datum(999999999) of a 1e9 range without materialising it', () => {
      expect(huge.length).toBe(1e9 + 1);
      expect(huge.datum(999_999_999)).toBe(999_999_999);
    });

    it('computes a datum in well under a microsecond', () => {
      const calls = 1_000_000;
      let sum = 0;
      const started = performance.now();
      for (let i = 0; i < calls; i++) sum += huge.datum(i * 997);
      const elapsedMs = performance.now() - started;
      expect(sum).toBeGreaterThan(0);
      expect(elapsedMs).toBeLessThan(500); // 0.5 µs per call; typically ~0.01
    });

    it('iterates lazily', () => {
      const first: unknown[] = [];
      for (const datum of huge) {
        if (first.length === 3) break;
        first.push(datum);
      }
      expect(first).toEqual([0, 1, 2]);
    });

    it('gives a window of slices', () => {
      expect([...huge.slices(999_999_998, 1_000_000_001)]).toEqual([999_999_998, 999_999_999, 1e9]);
    });

    it('throws ETOOBIG for more than 2^53 - 1 elements', () => {
      expect(codeOf(() => new RangeObject(0, '1e30'))).toBe(ErrorCode.ETOOBIG);
    });
  });

  describe('invalid ranges', () => {
    it.each([
      ['step 0', () => new RangeObject(0, 10, 0)],
      ['step "0.0"', () => new RangeObject(0, 10, '0.0')],
      ['end Infinity', () => new RangeObject(0, Infinity)],
      ['start -Infinity', () => new RangeObject(-Infinity, 0)],
      ['start NaN', () => new RangeObject(NaN, 1)],
      ['a positive step with end below start', () => new RangeObject(10, 5, 1)],
      ['the default step with end below start', () => new RangeObject({ start: 10, end: 5 })],
      ['a negative step with end above start', () => new RangeObject(1, 5, -1)],
      ['a non-decimal string', () => new RangeObject('abc', 5)],
      ['a missing end', () => new RangeObject({ start: 0 } as never)],
      ['a null start', () => new RangeObject(null as never, 5)],
      ['group 0', () => new RangeObject({ start: 0, end: 5, group: 0 })],
      ['group 1.5', () => new RangeObject({ start: 0, end: 5, group: 1.5 })],
      ['an end beyond the largest double', () => new RangeObject(0, '1e400')],
      ['an array descriptor', () => new RangeObject([0, 5] as never)],
    ])('throws EINVAL for %s', (_what, make) => {
      expect(codeOf(make)).toBe(ErrorCode.EINVAL);
    });

    it('says what is wrong', () => {
      expect(() => new RangeObject(10, 5)).toThrow(/descends, so it needs a negative step/);
      expect(() => new RangeObject(0, 5, 0)).toThrow(/step must not be 0/);
      expect(() => new RangeObject(0, Infinity)).toThrow(/end must be a finite number/);
    });
  });

  describe('indices', () => {
    const range = new RangeObject(0, 4);

    it.each([-1, 5, 1.5, NaN, Infinity])('throws ERANGE from datum(%p)', (i) => {
      expect(codeOf(() => range.datum(i))).toBe(ErrorCode.ERANGE);
    });

    it('throws ERANGE from sliceDatum past the last group', () => {
      expect(codeOf(() => new RangeObject({ start: 0, end: 4, group: 2 }).sliceDatum(3))).toBe(ErrorCode.ERANGE);
    });

    it('throws ERANGE for a slice window outside the set', () => {
      expect(codeOf(() => range.slices(2, 6))).toBe(ErrorCode.ERANGE);
      expect(codeOf(() => range.slices(3, 2))).toBe(ErrorCode.ERANGE);
    });
  });

  describe('indexOf (result handles\' lookupValue)', () => {
    it('finds an element arithmetically, as a number or a numeric string', () => {
      const range = new RangeObject({ start: 10, end: 1e12, step: 2 });
      expect(range.indexOf(10)).toBe(0);
      expect(range.indexOf('12')).toBe(1);
      expect(range.indexOf(1e12)).toBe(5e11 - 5);
      expect(range.indexOf(11)).toBe(-1);
      expect(range.indexOf(8)).toBe(-1);
      expect(range.indexOf(1e12 + 2)).toBe(-1);
      expect(range.indexOf('blue')).toBe(-1);
      expect(range.indexOf([10])).toBe(-1);
    });

    it('is exact for decimal steps and descending ranges', () => {
      expect(new RangeObject({ start: 0, end: 1, step: 0.1 }).indexOf(0.3)).toBe(3);
      expect(new RangeObject({ start: 0, end: 1, step: 0.1 }).indexOf(0.1 + 0.2)).toBe(-1);
      expect(new RangeObject({ start: 5, end: 1, step: -2 }).indexOf(1)).toBe(2);
    });

    it('finds a grouped slice by its whole group', () => {
      const range = new RangeObject({ start: 1, end: 5, group: 2 });
      expect(range.indexOf([3, 4])).toBe(1);
      expect(range.indexOf([5])).toBe(2);
      expect(range.indexOf([4, 5])).toBe(-1);
      expect(range.indexOf([3])).toBe(-1);
      expect(range.indexOf(3)).toBe(-1);
    });
  });

  // Observed from dcp-client 5.6.1 (`require('dcp/range-object').RangeObject`, offline), hard-coded:
  //   {start: 10, end: 13, step: 2} -> [10, 12]; {start: 10, end: 13, group: 2} -> [[10, 11], [12, 13]];
  //   {start: 10, end: 11, group: 1} -> [[10], [11]]; {start: 5, end: 1, step: -2} -> [5, 3, 1];
  //   {start: 1, end: 1e9}.length -> 1e9.
  // Where Commune deliberately differs (libs/client/README.md, "Differences from DCP"): dcp-client gives
  //   {start: 0, end: 1, step: 0.1} -> [..., 0.30000000000000004, ..., 0.6000000000000001, 0.7000000000000001, ...]
  //   (Commune: 0.3, 0.6, 0.7), defaults the step of {start: 5, end: 1} to -1 (Commune: EINVAL), and
  //   refuses decimal strings as bounds (Commune accepts them).
  describe('agreement with dcp-client', () => {
    it.each([
      [{ start: 10, end: 13, step: 2 }, [10, 12]],
      [{ start: 10, end: 13, group: 2 }, [[10, 11], [12, 13]]],
      [{ start: 10, end: 11, group: 1 }, [[10], [11]]],
      [{ start: 5, end: 1, step: -2 }, [5, 3, 1]],
    ])('%j', (descriptor, expected) => {
      expect([...new RangeObject(descriptor)]).toEqual(expected);
    });

    it('{start: 1, end: 1e9} has 1e9 elements', () => {
      expect(new RangeObject({ start: 1, end: 1e9 }).length).toBe(1e9);
    });
  });

  describe('descriptor', () => {
    it('serialises to the descriptor with numbers kept as given', () => {
      const range = new RangeObject({ start: '0.1', end: 5, step: '0.5', group: 2 });
      expect(JSON.parse(JSON.stringify(range))).toEqual({ start: '0.1', end: 5, step: '0.5', group: 2 });
    });

    it('omits step and group when they were not given', () => {
      expect(new RangeObject(1, 3).toJSON()).toEqual({ start: 1, end: 3 });
    });

    it('describes itself in a form the protocol schema accepts', () => {
      const described = new RangeObject({ start: '1E-3', end: 2, step: 0.5, group: 3 }).describe();
      expect(InputSetSchema.parse(described)).toEqual(described);
    });

    it('describes itself as a range input set', () => {
      expect(new RangeObject(1, 3, 1).describe()).toEqual({ kind: 'range', range: { start: 1, end: 3, step: 1 } });
    });
  });

  describe('property: datum(i) is start + i * step computed with BigNumber', () => {
    const seed = Number(process.env.RANGES_SEED ?? Date.now() % 2 ** 31);
    const random = seededRandom(seed);
    const int = (below: number) => Math.floor(random() * below);
    /** A random decimal below magnitude with up to `places` decimal places, scaled by 10^shift. */
    const decimalText = (magnitude: number, places: number, shift = 0): string =>
      new BigNumber(int(magnitude) * (random() < 0.5 ? -1 : 1)).shiftedBy(shift - int(places + 1)).toFixed();
    /** As given by a user: a number or a decimal string. */
    const given = (text: string): number | string => (random() < 0.5 ? Number(text) : text);

    it('holds for random ranges (fast and slow paths)', () => {
      for (let run = 0; run < 500; run++) {
        const slow = run % 5 === 0;
        // The slow path: a start beyond 2^53, or a step with more than 22 decimal places.
        const start = slow ? decimalText(1e6, 3, 17 + int(5)) : given(decimalText(1e9, 6));
        let step = slow ? decimalText(1e6, 30, int(20)) : given(decimalText(1e6, 6));
        if (new BigNumber(step).isZero()) step = 1;
        const count = 1 + int(1e6);
        // An end up to one step past the last element, to exercise the step-overflow rule.
        const end = new BigNumber(start).plus(new BigNumber(step).times(count - 1 + random() * 0.999)).toFixed();
        const context = () => `seed ${seed} (rerun with RANGES_SEED=${seed}), range ${JSON.stringify({ start, end, step })}`;

        let range: RangeObject;
        try {
          range = new RangeObject({ start, end, step });
        } catch (error) {
          throw new Error(`${context()}: ${String(error)}`);
        }
        if (range.length !== count) throw new Error(`${context()}: length ${range.length}, expected ${count}`);
        for (const i of [0, count - 1, int(count), int(count)]) {
          const expected = new BigNumber(start).plus(new BigNumber(step).times(i)).toNumber() || 0;
          const actual = range.datum(i);
          if (actual !== expected) throw new Error(`${context()}: datum(${i}) is ${actual}, expected ${expected}`);
        }
      }
    });
  });
});
