import { runsOf } from './lease-journal.repository.js';

describe(runsOf.name, () => {
  it('turns a fresh lease into one run', () => {
    expect(runsOf([10, 11, 12, 13])).toEqual([[10, 13]]);
  });
  it('keeps put-back slices leased before the fresh ones as their own runs', () => {
    expect(runsOf([3, 7, 8, 20, 21, 22])).toEqual([[3, 3], [7, 8], [20, 22]]);
  });
  it('sorts and merges duplicates and neighbours', () => {
    expect(runsOf([5, 4, 4, 9])).toEqual([[4, 5], [9, 9]]);
    expect(runsOf([])).toEqual([]);
  });
});
