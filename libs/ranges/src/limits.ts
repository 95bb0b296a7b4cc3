/**
 * The most elements toInputSet() takes from an iterable that is not an Array (a generator, Set,
 * typed array, ...). It
 * exists to stop an endless generator from exhausting memory; beyond it the SDK throws ETOOBIG.
 * Arrays are not counted: their size is known up front and the SDK bounds their serialized size
 * with Limits.maxInputSetBytes.
 */
export const maxIterableElements = 1_000_000;
