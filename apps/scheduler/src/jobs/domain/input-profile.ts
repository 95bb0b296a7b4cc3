import type { InputSet } from '@commune/ranges';

/** Slices sampled, evenly spread over the input set. */
const samples = 64;

/**
 * The mean size in bytes of a slice's input as JSON (what travels to a worker), from up to 64
 * slices spread over the set: meanSliceProfile's inputMBytes. O(samples), whatever the set's size.
 */
export function meanInputBytes(inputSet: InputSet): number {
  const total = inputSet.sliceCount;
  if (total === 0) return 0;
  const count = Math.min(samples, total);
  let bytes = 0;
  for (let k = 0; k < count; k++) {
    const sliceIndex = Math.floor((k * total) / count);
    bytes += Buffer.byteLength(JSON.stringify(inputSet.sliceDatum(sliceIndex)) ?? 'null');
  }
  return bytes / count;
}
