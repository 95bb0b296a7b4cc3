import { describe, expect, it } from '@jest/globals';
import { checkBounds, ErrorCode, Limits } from '@commune/protocol';
import { boundedSliceError, jsonNestingExceeds, jsonSize, maxErrorMessageChars, parseSandboxJson, sandboxValueDepth, utf8BytesAtMost, valueEnvelopeDepth } from './bounded.js';

const nested = (depth: number, leaf = '0') => '['.repeat(depth) + leaf + ']'.repeat(depth);

describe('jsonNestingExceeds', () => {
  it('counts nesting of arrays and objects', () => {
    expect(jsonNestingExceeds(nested(125), 125)).toBe(false);
    expect(jsonNestingExceeds(nested(126), 125)).toBe(true);
    expect(jsonNestingExceeds('{"a":'.repeat(126) + '1' + '}'.repeat(126), 125)).toBe(true);
    expect(jsonNestingExceeds('{"a":'.repeat(125) + '1' + '}'.repeat(125), 125)).toBe(false);
    expect(jsonNestingExceeds(nested(20_000), 125)).toBe(true);
  });

  it('measures the deepest point, not the number of containers', () => {
    const wide = `[${Array.from({ length: 1000 }, () => nested(100)).join(',')}]`;
    expect(jsonNestingExceeds(wide, 125)).toBe(false);
    expect(jsonNestingExceeds(wide, 100)).toBe(true);
  });

  it('ignores brackets inside strings, escaped quotes included', () => {
    expect(jsonNestingExceeds(JSON.stringify('['.repeat(1000)), 2)).toBe(false);
    expect(jsonNestingExceeds(JSON.stringify(['\\"[[[[[[', '"[[[[[']), 2)).toBe(false);
    expect(jsonNestingExceeds(JSON.stringify([['\\'], [['x']]]), 2)).toBe(true);
  });

  it('agrees with the protocol bounds once the value sits in its message envelope', () => {
    // A value at the limit fits `task:results`; one level more is refused by the scheduler's checkBounds.
    const message = (depth: number) => ({ taskId: 't', jobId: 'j', outcomes: [{ sliceIndex: 0, status: 'ok', value: JSON.parse(nested(depth)), elapsedMs: 1 }] });
    expect(sandboxValueDepth).toBe(Limits.maxValueDepth - valueEnvelopeDepth);
    expect(jsonNestingExceeds(nested(sandboxValueDepth))).toBe(false);
    expect(checkBounds(message(sandboxValueDepth))).toBeNull();
    expect(jsonNestingExceeds(nested(sandboxValueDepth + 1))).toBe(true);
    expect(checkBounds(message(sandboxValueDepth + 1))).toBe('depth');
  });
});

describe('parseSandboxJson', () => {
  it('parses values within the limits, with their weight', () => {
    const parsed = parseSandboxJson('{"a":[1,2,"é"]}', 'the result');
    expect(parsed).toMatchObject({ ok: true, value: { a: [1, 2, 'é'] } });
    if (parsed.ok) {
      expect(parsed.weight.bytes).toBeGreaterThanOrEqual(Buffer.byteLength('{"a":[1,2,"é"]}'));
      expect(parsed.weight.nodes).toBeGreaterThanOrEqual(5);
    }
  });

  it('refuses a value nested too deep with ETOODEEP before parsing it', () => {
    expect(parseSandboxJson(nested(20_000), 'the result')).toEqual({ ok: false, code: ErrorCode.ETOODEEP, message: `the result is nested deeper than ${sandboxValueDepth} levels` });
  });

  it('refuses a value over the byte limit with ERESULTTOOBIG, counting UTF-8 bytes', () => {
    expect(parseSandboxJson(JSON.stringify('x'.repeat(2000)), 'the result', 1000)).toMatchObject({ ok: false, code: ErrorCode.ERESULTTOOBIG });
    // 400 characters, 1200 bytes.
    expect(parseSandboxJson(JSON.stringify('€'.repeat(400)), 'the result', 1000)).toMatchObject({ ok: false, code: ErrorCode.ERESULTTOOBIG });
    expect(parseSandboxJson(JSON.stringify('€'.repeat(300)), 'the result', 1000)).toMatchObject({ ok: true });
  });

  it('refuses what is not JSON text', () => {
    expect(parseSandboxJson({ a: 1 }, 'the result')).toMatchObject({ ok: false, code: ErrorCode.EWORKFUNCTION });
    expect(parseSandboxJson('{"a":', 'the result')).toMatchObject({ ok: false, code: ErrorCode.EWORKFUNCTION });
  });
});

describe('boundedSliceError', () => {
  it('keeps the fields of a runtime error', () => {
    expect(boundedSliceError({ code: 'ERESULTTOOBIG', name: 'RangeError', message: 'too big', stack: 'RangeError: too big' })).toEqual({
      code: 'ERESULTTOOBIG',
      name: 'RangeError',
      message: 'too big',
      stack: 'RangeError: too big',
    });
  });

  it('does not let the sandbox claim a code of the scheduler or of another component', () => {
    expect(boundedSliceError({ code: 'ENOTLEASED', name: 'Error', message: 'x' }).code).toBe(ErrorCode.EWORKFUNCTION);
    expect(boundedSliceError({ code: 'ESANDBOXMEMORY', name: 'Error', message: 'x' }).code).toBe(ErrorCode.EWORKFUNCTION);
  });

  it('bounds every field and ignores what is not a string', () => {
    const error = boundedSliceError({ code: 1, name: { deep: [[[]]] }, message: 'm'.repeat(1_000_000), stack: ['not', 'a', 'string'] });
    expect(error.code).toBe(ErrorCode.EWORKFUNCTION);
    expect(error.name).toBe('Error');
    expect(error.message.length).toBeLessThan(maxErrorMessageChars + 100);
    expect(error.stack).toBeUndefined();
    expect(boundedSliceError(null)).toMatchObject({ code: ErrorCode.EWORKFUNCTION, name: 'Error' });
  });
});

describe('weights', () => {
  it('are upper bounds of UTF-8 bytes and values', () => {
    for (const value of [0, 'é', [1, 2, 3], { a: [[], {}], b: 'xyz' }, 'x'.repeat(5000), Array.from({ length: 3000 }, (_, i) => i)]) {
      const text = JSON.stringify(value);
      const weight = jsonSize(text);
      expect(weight.bytes).toBeGreaterThanOrEqual(Buffer.byteLength(text));
      expect(utf8BytesAtMost(text)).toBeGreaterThanOrEqual(Buffer.byteLength(text));
      let nodes = 0;
      const stack: unknown[] = [value];
      while (stack.length > 0) {
        const item = stack.pop();
        nodes++;
        if (item !== null && typeof item === 'object') stack.push(...Object.values(item));
      }
      expect(weight.nodes).toBeGreaterThanOrEqual(nodes);
    }
  });
});
