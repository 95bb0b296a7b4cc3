import { formRange, inputSetFromDescriptor, toInputSet } from '@commune/ranges';
import { meanInputBytes } from './input-profile.js';

describe(meanInputBytes.name, () => {
  it('is the mean JSON size of the inputs of a small set', () => {
    expect(meanInputBytes(toInputSet(['ab', 'abcd']))).toBe(5); // "ab" is 4 bytes, "abcd" 6
  });
  it('samples a huge range without walking it', () => {
    const bytes = meanInputBytes(toInputSet(formRange(1e12, 1e12 + 1e9)));
    expect(bytes).toBe(13); // every element has 13 digits
  });
  it('is 0 for an empty set', () => {
    expect(meanInputBytes(inputSetFromDescriptor({ kind: 'array', values: [] }))).toBe(0);
  });
});
