import {
  applyStateOperation, decodeState, encodeState, LocalStateArbiter, StateOperationSchema, compareStateValues,
  type StateCondition, type StateObject, type StateOperationInput,
} from './shared-state.js';

const op = (input: StateOperationInput) => StateOperationSchema.parse(input);
const set = (state: StateObject, condition?: StateCondition, property?: string, test = false) =>
  op({ kind: 'set', test, state: encodeState(state), ...(condition ? { condition, property } : {}) });

describe('shared state: state text', () => {
  it('keeps Infinity, -Infinity and NaN, and JSON everything else', () => {
    const value = { best: Infinity, worst: -Infinity, nothing: NaN, list: [1, -Infinity, 'NaN', 'x"Infinity"'], nested: { a: null, s: '-Infinity' } };
    const text = encodeState(value);
    expect(text).toBe('{"best":Infinity,"worst":-Infinity,"nothing":NaN,"list":[1,-Infinity,"NaN","x\\"Infinity\\""],"nested":{"a":null,"s":"-Infinity"}}');
    expect(decodeState(text)).toEqual(value);
  });
  it('follows JSON.stringify for what JSON drops, and refuses bigints (EINVAL)', () => {
    expect(encodeState({ f: () => 1, u: undefined, d: new Date(0) })).toBe('{"d":"1970-01-01T00:00:00.000Z"}');
    expect(() => encodeState({ n: 1n })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('shared state: operations (applyStateOperation)', () => {
  const stored: StateObject = { best: 5, name: 'm', flag: true, nothing: null };

  it('set() replaces the object unconditionally', () => {
    const outcome = applyStateOperation(stored, set({ other: 1 }));
    expect(outcome).toMatchObject({ replaced: true, state: { other: 1 }, previous: stored });
  });

  it.each([
    ['max', 6, true], ['max', 5, false], ['max', 4, false],
    ['min', 4, true], ['min', 5, false], ['min', 6, false],
    ['>', 6, true], ['>', 5, false],
    ['<', 4, true], ['<', 5, false],
    ['>=', 5, true], ['>=', 4, false],
    ['<=', 5, true], ['<=', 6, false],
    ['==', 5, true], ['==', '5', true], ['==', 4, false],
    ['!=', 4, true], ['!=', 5, false], ['!=', '5', false],
  ] as Array<[StateCondition, unknown, boolean]>)('set(%s, "best") with best = %p against 5 replaces: %p', (condition, best, replaced) => {
    const outcome = applyStateOperation(stored, set({ ...stored, best }, condition, 'best'));
    expect(outcome.replaced).toBe(replaced);
    expect(outcome.state).toEqual(replaced ? { ...stored, best } : stored);
  });

  it('compares with JS operators: absent is undefined, null is 0, strings by code unit, NaN never', () => {
    expect(compareStateValues('min', 5, undefined)).toBe(false);
    expect(compareStateValues('min', 5, Infinity)).toBe(true);
    expect(compareStateValues('max', 1, null)).toBe(true);
    expect(compareStateValues('==', null, undefined)).toBe(true);
    expect(compareStateValues('==', 0, null)).toBe(false);
    expect(compareStateValues('<', 'b', 'a')).toBe(false);
    expect(compareStateValues('<', '\uffff', '\u{1F600}')).toBe(false); // code units: U+FFFF > U+D83D
    expect(compareStateValues('<', '10', '9')).toBe(true);
    expect(compareStateValues('<', 10, '9')).toBe(false);
    expect(compareStateValues('>=', NaN, NaN)).toBe(false);
    expect(compareStateValues('==', true, 1)).toBe(true);
    expect(compareStateValues('==', ' 0x10 ', 16)).toBe(true);
  });

  it('refuses an object or array as a compared value (EINVAL)', () => {
    expect(() => applyStateOperation({ best: [1] }, set({ best: 1 }, 'min', 'best'))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => applyStateOperation({ best: 1 }, set({ best: {} }, 'min', 'best'))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('testAndSet is set with a snapshot of the object before, or no replacement', () => {
    const arbiter = new LocalStateArbiter({ best: 5 });
    expect(arbiter.apply(set({ best: 7 }, 'min', 'best', true))).toEqual({ ok: true, replaced: false, version: 0, state: '{"best":5}' });
    expect(arbiter.apply(set({ best: 3 }, 'min', 'best', true))).toEqual({ ok: true, replaced: true, version: 1, state: '{"best":3}', previous: '{"best":5}' });
  });

  it('increment() adds 1 by default, any finite n, negatives too, with +=', () => {
    const byDefault = op({ kind: 'increment', property: 'count', by: 1 });
    expect(applyStateOperation({ count: 1 }, byDefault).state).toEqual({ count: 2 });
    expect(applyStateOperation({ count: 1 }, op({ kind: 'increment', property: 'count', by: -3.5 })).state).toEqual({ count: -2.5 });
    expect(applyStateOperation({}, byDefault).state).toEqual({ count: NaN });
    expect(applyStateOperation({ count: null }, byDefault).state).toEqual({ count: 1 });
    expect(applyStateOperation({ count: 'a' }, byDefault).state).toEqual({ count: 'a1' });
    expect(applyStateOperation({ count: true }, byDefault).state).toEqual({ count: 2 });
    expect(() => op({ kind: 'increment', property: 'count', by: Infinity })).toThrow();
  });

  it('refuses a state larger than the limit (ESTATETOOBIG), for set and for increment', () => {
    expect(() => applyStateOperation({}, set({ text: 'x'.repeat(100) }), 50)).toThrow(expect.objectContaining({ code: 'ESTATETOOBIG' }));
    const near = { text: 'x'.repeat(40) }; // 51 bytes of state text
    expect(() => applyStateOperation(near, op({ kind: 'increment', property: 'text', by: 1 }), 51)).toThrow(expect.objectContaining({ code: 'ESTATETOOBIG' }));
    expect(() => StateOperationSchema.parse({ kind: 'set', state: JSON.stringify({ t: 'x'.repeat(70_000) }) })).toThrow();
  });

  it('the local arbiter counts versions only for changes', () => {
    const arbiter = new LocalStateArbiter({ n: 0 });
    for (let i = 0; i < 10; i++) arbiter.apply(op({ kind: 'increment', property: 'n', by: 1 }));
    arbiter.apply(set({ n: 100 }, '<', 'n'));
    expect(arbiter.snapshot).toEqual({ version: 10, state: '{"n":10}' });
  });
});
