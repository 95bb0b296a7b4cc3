import { assertBounded, checkBounds } from './bounds.js';
import { CommuneError } from './errors.js';

const nested = (depth: number): unknown => {
  let value: unknown = 0;
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { v: value };
  return value;
};
const bounds = { maxDepth: 10, maxNodes: 100, maxStringChars: 50 };

describe('bounded values', () => {
  it('takes plain data within every bound', () => {
    expect(checkBounds({ a: [1, 'two', null, true, { b: nested(5) }] }, bounds)).toBeNull();
    expect(checkBounds(nested(10), bounds)).toBeNull();
  });

  it('refuses nesting past maxDepth without recursing (20,000 levels do not overflow the stack)', () => {
    expect(checkBounds(nested(11), bounds)).toBe('depth');
    expect(() => assertBounded(nested(20_000), undefined, 'task:events payload')).toThrow(CommuneError);
    try {
      assertBounded(nested(20_000));
    } catch (error) {
      expect((error as CommuneError).code).toBe('ETOODEEP');
    }
  });

  it('refuses too many values and too many characters (keys and binary count too) as ETOOBIG', () => {
    expect(checkBounds(Array.from({ length: 101 }, () => 0), bounds)).toBe('nodes');
    expect(checkBounds(['x'.repeat(51)], bounds)).toBe('chars');
    expect(checkBounds({ ['k'.repeat(51)]: 1 }, bounds)).toBe('chars');
    expect(checkBounds(new Uint8Array(51), bounds)).toBe('chars');
    let code = '';
    try {
      assertBounded('y'.repeat(51), bounds);
    } catch (error) {
      code = (error as CommuneError).code;
    }
    expect(code).toBe('ETOOBIG');
  });

  it('refuses a cyclic value as too big instead of looping', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(checkBounds(cyclic, { maxDepth: 1e9, maxNodes: 1000, maxStringChars: 1e9 })).toBe('nodes');
  });
});
