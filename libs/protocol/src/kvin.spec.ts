import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { CommuneError, ErrorCode, isCommuneError } from './errors.js';
import { decodeKvin, encodeKvin, kvinContentType } from './kvin.js';

/**
 * Our KVIN against DCP's own `kvin` 9 package (a devDependency, never used at run time): what we
 * write must read back the same in both implementations, and what kvin writes must read the same
 * in ours as in kvin. Random values come from fast-check; a failing property prints its seed,
 * replayable with KVIN_PROPERTY_SEED=<seed>.
 */

interface KvinModule {
  serialize(value: unknown): string;
  deserialize(text: string): unknown;
  KVIN: new () => KvinModule & { tune?: string };
}
const reference = createRequire(import.meta.url)('kvin') as KvinModule;
const seed = Number(process.env.KVIN_PROPERTY_SEED ?? (Date.now() ^ (Math.random() * 2 ** 31)) >>> 0);
const prefix = '{"_serializeVerId":"v9","what":';
const text = (what: unknown): string => prefix + JSON.stringify(what) + '}';

function thrown(action: () => unknown): CommuneError {
  try {
    action();
  } catch (error) {
    if (!isCommuneError(error)) throw new Error(`expected a CommuneError, got ${String(error)}`);
    return error;
  }
  throw new Error('expected a CommuneError, got none');
}

const roundTrip = (value: unknown) => decodeKvin(encodeKvin(value));

/** Values of every kind that travels, each faithful in both implementations. */
function catalog(): Record<string, unknown> {
  const sparse: unknown[] = [1, , 3, , ,];
  return {
    number: 5,
    float: -1.25e-300,
    string: 'héllo \u2028 \ud83d\ude00',
    loneSurrogate: '\ud800x',
    null: null,
    true: true,
    undefined: undefined,
    NaN: NaN,
    Infinity: Infinity,
    minusInfinity: -Infinity,
    minusZero: -0,
    nestedSpecials: { a: -0, b: [1, -0, NaN, undefined, -Infinity], c: { d: undefined } },
    bigint: -123456789012345678901234567890n,
    date: new Date(1_234_567_890_123),
    farDate: new Date(8.64e15),
    uint8: new Uint8Array([0, 1, 2, 254, 255]),
    float64: new Float64Array([1.5, -0, NaN, Infinity, 0, 0, 0, 0, 1e-310]),
    zeros: new Float64Array(4096),
    int8: new Int8Array([-128, 127, 0, -1]),
    int16: new Int16Array([-32768, 32767]),
    uint16: new Uint16Array([65535, 1]),
    int32: new Int32Array([-(2 ** 31), 2 ** 31 - 1]),
    uint32: new Uint32Array([2 ** 32 - 1]),
    float32: new Float32Array([3.5, -0]),
    clamped: new Uint8ClampedArray([0, 255, 128]),
    bigInt64: new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]),
    bigUint64: new BigUint64Array([2n ** 64n - 1n, 0n]),
    empty: new Float64Array(0),
    dataView: new DataView(new Uint8Array([9, 8, 7]).buffer),
    map: new Map<unknown, unknown>([
      [1, { a: 1 }],
      ['k', [1, 2]],
      [{ o: 1 }, new Date(5)],
      [NaN, undefined],
    ]),
    set: new Set<unknown>([1, 'a', { b: 2 }, new Date(7), -0]),
    sparse,
    namedArray: Object.assign([1, 2], { label: 'x', more: { y: undefined } }),
    sparseNamed: Object.assign([, 'b'], { label: 'z' }),
    longArray: Array.from({ length: 50 }, (_, i) => (i % 7 === 0 ? undefined : i)),
    regexp: /a+\/[b-c]*$/gimsuy,
    url: new URL('https://example.com:8443/a/b?c=d&e=%20f#g'),
    boxed: [new Boolean(false), new Boolean(true), new Number(-0), new Number(NaN), new String('hi')],
    objectWithDate: { when: new Date(0), what: 'x', nested: { deep: [new Map([[1, new Set([2])]])] } },
    dateWithMember: Object.assign(new Date(3), { note: 'own member' }),
    mapWithMember: Object.assign(new Map([[1, 2]]), { note: 'own member' }),
    constructorKeys: { constructor: 'c', prototype: { hasOwnProperty: 1 }, toString: 'not a function' },
    numericKeys: { 10: 'ten', 2: 'two', b: 'b', a: 'a' },
  };
}

describe('KVIN', () => {
  describe('what travels', () => {
    it.each(Object.entries(catalog()))('%s comes back as it went (ours to ours)', (_name, value) => {
      expect(isDeepStrictEqual(roundTrip(value), value)).toBe(true);
    });

    it.each(Object.entries(catalog()))('%s written by us is read the same by DCP kvin 9', (_name, value) => {
      expect(isDeepStrictEqual(reference.deserialize(encodeKvin(value)), value)).toBe(true);
    });

    it('reads what kvin 9 writes as kvin does, and as it went where kvin keeps it', () => {
      const lossless = ['number', 'string', 'null', 'undefined', 'NaN', 'minusZero', 'bigint', 'date', 'uint8', 'float64', 'zeros', 'bigInt64', 'dataView', 'map', 'set'];
      for (const [name, value] of Object.entries(catalog())) {
        if (name === 'constructorKeys') continue; // kvin 9's writer calls the member named toString
        const theirs = reference.serialize(value);
        const ours = decodeKvin(theirs);
        // (Where kvin's decoder is wrong, "boxed", the next test says what we read.)
        if (name !== 'boxed') expect([name, isDeepStrictEqual(ours, reference.deserialize(theirs))]).toEqual([name, true]);
        if (lossless.includes(name)) expect([name, isDeepStrictEqual(ours, value)]).toEqual([name, true]);
      }
    });

    it('reads kvin 9 texts where kvin itself is wrong as the value that was written', () => {
      // kvin writes new Boolean(false) as "false" and reads that back as true; an invalid Date as null, read back as 1970.
      expect(decodeKvin(reference.serialize(new Boolean(false)))).toEqual(new Boolean(false));
      expect(Number.isNaN((decodeKvin(reference.serialize(new Date(NaN))) as Date).getTime())).toBe(true);
      expect(Number.isNaN((roundTrip(new Date(NaN)) as Date).getTime())).toBe(true);
      expect(Number.isNaN((reference.deserialize(encodeKvin(new Date(NaN))) as Date).getTime())).toBe(true);
      // kvin repeats equal raw arrays with lst and reads them back as one array: a Set of two arrays became a Set of one.
      expect((reference.deserialize(reference.serialize(new Set([[], []]))) as Set<unknown>).size).toBe(1);
      expect(decodeKvin(reference.serialize(new Set([[], []])))).toEqual(new Set([[], []]));
    });

    it('reads kvin 9 texts of its "size" tuning (16-bit words, islands of them) and "speed" tuning (numbers)', () => {
      const sized = new reference.KVIN();
      sized.tune = 'size';
      const words = new Uint16Array(600).map((_, i) => (i < 200 || i > 400 ? 0x4e00 + i : 0));
      const odd = new Uint8Array(301).map((_, i) => 0x41 + (i % 26));
      const small = new Int32Array([7, -7]);
      for (const value of [words, odd, small, new Uint16Array([0x4e01, 0x4e02, 0x4e03, 0x4e04, 0x4e05, 0x4e06])]) {
        const written = sized.serialize(value);
        expect(isDeepStrictEqual(decodeKvin(written), value)).toBe(true);
      }
      expect(sized.serialize(words)).toContain('"isl16"');
      expect(sized.serialize(odd)).toContain('"eb"'); // kvin's own decoder fails on this one
      const fast = new reference.KVIN();
      fast.tune = 'speed';
      expect(fast.serialize(new Float64Array([1.5, NaN]))).toContain('"arg"');
      expect(decodeKvin(fast.serialize(new Float32Array([1.5, 2, -3])))).toEqual(new Float32Array([1.5, 2, -3]));
    });

    it('writes plain data as JSON, so that it costs JSON.stringify and stays queryable', () => {
      const value = { a: 1, b: ['x', true, null, { c: 2.5 }], d: {} };
      expect(encodeKvin(value)).toBe(`${prefix}{"raw":${JSON.stringify(value)}}}`);
      expect(encodeKvin(42)).toBe(`${prefix}42}`);
      expect(encodeKvin('s')).toBe(`${prefix}{"raw":"s"}}`);
      expect(JSON.parse(encodeKvin(value)).what.raw).toEqual(value);
      expect(kvinContentType).toBe('application/x-kvin');
    });

    it('writes a typed array as its bytes, and long runs of zeros in a few characters', () => {
      const megabyte = new Float64Array(131_072);
      megabyte[1000] = Math.PI;
      const written = encodeKvin(megabyte);
      expect(written.length).toBeLessThan(200);
      expect(roundTrip(megabyte)).toEqual(megabyte);
      const random = new Float64Array(1000).map(() => Math.random() * 1e6 - 5e5);
      expect(roundTrip(random)).toEqual(random);
      expect(reference.deserialize(encodeKvin(random))).toEqual(random);
    });

    it('sends a view as its own bytes only, and a Buffer as a Uint8Array', () => {
      const buffer = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]).buffer;
      const view = new Uint16Array(buffer, 2, 2);
      const back = roundTrip(view) as Uint16Array;
      expect(back).toEqual(new Uint16Array([0x0403, 0x0605]));
      expect(back.buffer.byteLength).toBe(4);
      const fromNode = roundTrip(Buffer.from('hello')) as Uint8Array;
      expect(ArrayBuffer.isView(fromNode) && fromNode.constructor.name).toBe('Uint8Array');
      expect([...fromNode]).toEqual([...Buffer.from('hello')]);
    });

    it('reads a null-prototype object as a plain object with the same members', () => {
      const value = Object.assign(Object.create(null), { a: 1, b: { c: undefined } });
      expect(roundTrip(value)).toEqual({ a: 1, b: { c: undefined } });
    });
  });

  describe('errors', () => {
    it('sends name, message, stack, code, cause and own members; a standard class comes back as itself', () => {
      const error = Object.assign(new TypeError('boom', { cause: { why: new Date(1) } }), { code: 'E42', detail: [1, undefined] });
      const back = roundTrip(error) as TypeError & { code: string; detail: unknown[] };
      expect(back).toBeInstanceOf(TypeError);
      expect(back.message).toBe('boom');
      expect(back.stack).toBe(error.stack);
      expect(back.code).toBe('E42');
      expect(back.detail).toEqual([1, undefined]);
      expect(back.cause).toEqual({ why: new Date(1) });
      expect(Object.keys(back)).toEqual(['code', 'detail']); // name, stack and cause stay non-enumerable
      const theirs = reference.deserialize(encodeKvin(error)) as Error & { code: string };
      expect([theirs instanceof Error, theirs.name, theirs.message, theirs.code, theirs.stack]).toEqual([true, 'TypeError', 'boom', 'E42', error.stack]);
    });

    it('sends an error of a user class as an Error carrying its name (no class is rebuilt)', () => {
      class QuotaError extends Error {
        override name = 'QuotaError';
        limit = 5;
      }
      const back = roundTrip(new QuotaError('over')) as Error & { limit: number };
      expect(Object.getPrototypeOf(back)).toBe(Error.prototype);
      expect([back.name, back.message, back.limit]).toEqual(['QuotaError', 'over', 5]);
    });

    it('reads kvin 9 errors, and never gives a decoded error the decoder\'s own stack', () => {
      const error = new RangeError('out');
      const back = decodeKvin(reference.serialize(error)) as Error;
      expect([back instanceof Error, back.message, back.stack]).toEqual([true, 'out', error.stack]);
      const withoutStack = decodeKvin(text({ ctr: 'Error', arg: 'no stack' })) as Error;
      expect(withoutStack.message).toBe('no stack');
      expect(withoutStack.stack).toBeUndefined();
    });
  });

  describe('shared references and cycles', () => {
    it('keeps cycles through objects, arrays and Maps, in both implementations', () => {
      const object: Record<string, unknown> = { a: 1, when: new Date(2) };
      object.self = object;
      const array: unknown[] = [1];
      array.push(array);
      const map = new Map<unknown, unknown>();
      map.set('self', map);
      map.set(map, 'key');
      for (const read of [decodeKvin, reference.deserialize]) {
        const o = read(encodeKvin(object)) as Record<string, unknown>;
        expect(o.self).toBe(o);
        const a = read(encodeKvin(array)) as unknown[];
        expect(a[1]).toBe(a);
        const m = read(encodeKvin(map)) as Map<unknown, unknown>;
        expect(m.get('self')).toBe(m);
        expect(m.get(m)).toBe('key');
      }
    });

    it('keeps an object other than plain data shared where it is shared, also after a Map (which kvin 9 itself misnumbers)', () => {
      const when = new Date(9);
      const holder = { x: undefined as unknown };
      const value = { before: new Map([[1, new Set([2])]]), a: when, b: when, c: holder, d: [holder], e: new Float64Array([1]) };
      for (const read of [decodeKvin, reference.deserialize]) {
        const back = read(encodeKvin(value)) as typeof value;
        expect(back.a).toBe(back.b);
        expect(back.d[0]).toBe(back.c);
        expect(isDeepStrictEqual(back, value)).toBe(true);
      }
    });

    it('sends plain data met twice as two equal copies, as JSON and kvin do', () => {
      const point = { x: 1, y: 2 };
      const back = roundTrip({ p: point, q: point, when: new Date(0) }) as { p: object; q: object };
      expect(back.p).toEqual(back.q);
      expect(back.p).not.toBe(back.q);
      const plain = roundTrip([point, point]) as object[];
      expect(plain[0]).toEqual(plain[1]);
    });

    it('bounds plain data shared into exponentially many copies', () => {
      let value: unknown = [1];
      for (let i = 0; i < 40; i++) value = [value, value];
      expect(thrown(() => encodeKvin(value)).code).toBe(ErrorCode.ETOOBIG);
      let mixed: unknown = [undefined];
      for (let i = 0; i < 40; i++) mixed = [mixed, mixed];
      // Not plain data: shared by reference, so 41 arrays in a short text (deep equality would take 2^40 steps).
      const written = encodeKvin(mixed);
      expect(written.length).toBeLessThan(2000);
      let back = decodeKvin(written) as unknown[];
      for (let i = 0; i < 40; i++) {
        expect(back).toHaveLength(2);
        expect(back[0]).toBe(back[1]);
        back = back[0] as unknown[];
      }
      expect(back).toEqual([undefined]);
    });
  });

  describe('what cannot travel is refused, saying where', () => {
    class Point {
      constructor(readonly x: number) {}
    }
    const cyclicSet = new Set<unknown>();
    cyclicSet.add({ back: cyclicSet });
    const shared = new Set([1]);
    const cases: Array<[string, unknown, RegExp]> = [
      ['a function', { a: [1, { f() {} }] }, /the value at \.a\[1\]\.f is a function/],
      ['a symbol', { s: Symbol('x') }, /\.s is a symbol/],
      ['a class instance', { p: new Point(1) }, /\.p is an instance of Point/],
      ['a subclass of Map', new (class Registry extends Map {})(), /an instance of Registry/],
      ['an object with a prototype of its own', Object.create({ inherited: 1 }), /made with Object\.create\(\) of another object/],
      ['a Promise', [Promise.resolve(1)], /\[0\] is a Promise/],
      ['a WeakMap', { w: new WeakMap() }, /a WeakMap/],
      ['an ArrayBuffer', { b: new ArrayBuffer(4) }, /an ArrayBuffer .*new Uint8Array\(buffer\)/],
      ['a Set met twice', { a: shared, b: shared }, /\.b is a Set met a second time/],
      ['a cycle through a Set', cyclicSet, /a Set met a second time/],
      ['a member named __proto__', JSON.parse('{"a":{"__proto__":1}}'), /\.a\.__proto__ is a property named __proto__/],
      ['a Map key that is a function', new Map([[() => 1, 1]]), /<a Map key> is a function/],
    ];
    it.each(cases)('%s: EUNSERIALIZABLE', (_name, value, message) => {
      const error = thrown(() => encodeKvin(value));
      expect(error.code).toBe(ErrorCode.EUNSERIALIZABLE);
      expect(error.message).toMatch(message);
    });

    it('a value whose getter throws: EUNSERIALIZABLE', () => {
      const value = {
        get broken(): unknown {
          throw new Error('no');
        },
      };
      expect(thrown(() => encodeKvin(value)).code).toBe(ErrorCode.EUNSERIALIZABLE);
    });
  });

  describe('limits, the same when writing and reading', () => {
    const nest = (depth: number, leaf: unknown = 0): unknown => {
      let value = leaf;
      for (let i = 0; i < depth; i++) value = i % 3 === 0 ? [value] : i % 3 === 1 ? { v: value } : new Map([[0, value]]);
      return value;
    };

    it('depth: maxDepth levels travel, one more is ETOODEEP both ways', () => {
      for (const leaf of [0, undefined]) {
        expect(isDeepStrictEqual(decodeKvin(encodeKvin(nest(5, leaf), { maxDepth: 5 }), { maxDepth: 5 }), nest(5, leaf))).toBe(true);
        expect(thrown(() => encodeKvin(nest(6, leaf), { maxDepth: 5 })).code).toBe(ErrorCode.ETOODEEP);
        expect(thrown(() => decodeKvin(encodeKvin(nest(6, leaf)), { maxDepth: 5 })).code).toBe(ErrorCode.ETOODEEP);
      }
    });

    it('values: the writer and the reader count the same', () => {
      const error = Object.assign(new Error('e'), { code: 1 });
      const sparse: unknown[] = [1, , { a: NaN }];
      const values: unknown[] = [
        { a: [1, 2, { b: 'c' }], d: new Date(0), m: new Map([[1, { x: [undefined] }]]), s: new Set([1, 2]), e: error, t: new Uint8Array(3), sparse },
        Array.from({ length: 20 }, (_, i) => ({ i })),
      ];
      for (const value of values) {
        let least = 1;
        while (least < 1000 && !encodesWithin(value, least)) least++;
        const written = encodeKvin(value);
        expect(isDeepStrictEqual(decodeKvin(written, { maxNodes: least }), value)).toBe(true);
        expect(thrown(() => decodeKvin(written, { maxNodes: least - 1 })).code).toBe(ErrorCode.ETOOBIG);
      }
      function encodesWithin(value: unknown, maxNodes: number): boolean {
        try {
          encodeKvin(value, { maxNodes });
          return true;
        } catch {
          return false;
        }
      }
    });

    it('text length: checked before the text is parsed, when writing too', () => {
      expect(thrown(() => decodeKvin('x'.repeat(101), { maxBytes: 100 })).code).toBe(ErrorCode.ETOOBIG);
      expect(thrown(() => encodeKvin('y'.repeat(200), { maxBytes: 100 })).code).toBe(ErrorCode.ETOOBIG);
      expect(thrown(() => encodeKvin([new Float64Array(20)], { maxBytes: 100 })).code).toBe(ErrorCode.ETOOBIG);
    });

    it('a limit given as undefined keeps its default', () => {
      expect(thrown(() => encodeKvin(nest(200), { maxDepth: undefined })).code).toBe(ErrorCode.ETOODEEP);
      expect(thrown(() => decodeKvin(encodeKvin(nest(120)), { maxDepth: undefined, maxNodes: 5 })).code).toBe(ErrorCode.ETOOBIG);
    });

    it('BigInt digits: maxBigIntDigits both ways', () => {
      const big = 10n ** 50n;
      expect(roundTrip(big)).toBe(big);
      expect(thrown(() => encodeKvin(big, { maxBigIntDigits: 50 })).code).toBe(ErrorCode.ETOOBIG);
      expect(thrown(() => decodeKvin(encodeKvin(big), { maxBigIntDigits: 50 })).code).toBe(ErrorCode.ETOOBIG);
      expect(thrown(() => decodeKvin(text({ bigint: '9'.repeat(30_000) }))).code).toBe(ErrorCode.ETOOBIG);
    });
  });

  describe('hostile text', () => {
    const code = (what: string) => thrown(() => decodeKvin(what)).code;

    it('refuses what is not KVIN: EINVAL', () => {
      expect(thrown(() => decodeKvin(42 as unknown as string)).code).toBe(ErrorCode.EINVAL);
      for (const bad of ['', 'not json', '[1]', 'null', '{"what":{"raw":1}}', '{"_serializeVerId":"v10","what":1}', '{"_serializeVerId":"v9"}']) {
        expect([bad, code(bad)]).toEqual([bad, ErrorCode.EINVAL]);
      }
      expect(decodeKvin('{"_serializeVerId":"v4","what":{"ptv":[1,2]}}')).toEqual([1, 2]);
      expect(decodeKvin(' {"what":7, "_serializeVerId":"v9"} ')).toBe(7);
    });

    it('never makes a class by name, a function, a symbol or a Promise: EUNSERIALIZABLE', () => {
      const marker = '__kvinSpecMarker';
      const payloads: unknown[] = [
        { ctr: 'Person', ps: {} },
        { ctr: 'process' },
        { ctr: 'eval', arg: `globalThis.${marker} = 1` },
        { ctr: 'Function', arg: `globalThis.${marker} = 1` },
        { ctr: 15, arg: 'return 1' },
        { ctr: 0, fnName: 'f', arg: `function f() { globalThis.${marker} = 1 }` },
        { ctr: 17 },
        { symbol: 'x' },
        { resolve: 1 },
        { ctr: 'WeakMap', arg: [] },
        { ctr: 'ArrayBuffer', ps: {} },
      ];
      for (const payload of payloads) expect([payload, code(text(payload))]).toEqual([payload, ErrorCode.EUNSERIALIZABLE]);
      expect((globalThis as Record<string, unknown>)[marker]).toBeUndefined();
      expect(thrown(() => decodeKvin(text({ ctr: 'Person' }))).message).toMatch(/class Person/);
    });

    it('refuses malformed forms: EINVAL', () => {
      const payloads: unknown[] = [
        { ctr: 'a.b' },
        { ctr: -1 },
        { ctr: 21 },
        { ctr: 1.5 },
        { ctr: 14, arg: 4e9 },
        { ctr: 20, arg: [1] },
        { ctr: 0, arg: 'x' },
        { seen: 0 },
        { arr: [{ ctr: 0 }, { seen: 5 }] },
        { arr: [{ lst: 3 }] },
        { arr: [1, { lst: -2 }] },
        { arr: [1, { lst: 'many' }] },
        { arr: [], ps: { length: 5 } },
        { arr: [], len: -1 },
        { arr: 'no' },
        { ctr: 9, ab8: 'abc' }, // 3 bytes are not Float64s
        { ctr: 2, ab8: '\u0100' }, // not a byte
        { ctr: 2, isl8: [{ 0: 'ab', '@': 9 }], len: 10 },
        { ctr: 2, isl8: [{ 0: 'ab' }], len: 10 },
        { ctr: 'DataView' },
        { mapKeys: { arr: [1, 2] }, mapVals: { arr: [1] } },
        { mapKeys: { arr: [1] } },
        { set: [1] },
        { bigint: '1e3' },
        { bigint: 12 },
        { number: 'lots' },
        { json: '{' },
        { ctr: 19 },
        { ctr: 10, args: ['('] },
        { ctr: 18, arg: 'not a url' },
        { ctr: 12 },
        { ctr: 13, arg: 'yes' },
        { nothing: 1 },
        [1, 2],
      ];
      for (const payload of payloads) expect([payload, code(text(payload))]).toEqual([payload, ErrorCode.EINVAL]);
    });

    it('keeps __proto__, constructor and prototype members as own data: no prototype changes, no pollution', () => {
      // Written out: an object literal's __proto__ sets its prototype, so JSON.stringify cannot write these.
      const polluter = '{"raw":{"polluted":true}}';
      const values = [
        `${prefix}{"raw":{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}}}`,
        `${prefix}{"ctr":0,"ps":{"__proto__":${polluter},"constructor":${polluter},"prototype":${polluter}}}}`,
        `${prefix}{"arr":[1],"ps":{"__proto__":${polluter},"constructor":${polluter}}}}`,
        `${prefix}{"mapKeys":{"arr":[]},"mapVals":{"arr":[]},"ps":{"__proto__":${polluter},"size":5}}}`,
        `${prefix}{"ctr":19,"arg":0,"ps":{"__proto__":${polluter}}}}`,
        `${prefix}{"ctr":"Error","arg":"m","ps":{"__proto__":${polluter}}}}`,
        `${prefix}{"arr":[{"raw":{"__proto__":{"polluted":true}}}]}}`,
      ].map((written) => decodeKvin(written));
      const prototypes = [Object.prototype, Object.prototype, Array.prototype, Map.prototype, Date.prototype, Error.prototype];
      values.slice(0, 6).forEach((value, i) => {
        expect(Object.getPrototypeOf(value)).toBe(prototypes[i]);
        expect(Object.prototype.hasOwnProperty.call(value, '__proto__')).toBe(true);
        expect((value as { polluted?: unknown }).polluted).toBeUndefined();
      });
      expect(Object.getPrototypeOf((values[6] as object[])[0])).toBe(Object.prototype);
      expect((values[3] as Map<unknown, unknown>).size).toBe(5); // an own member, defined: the Map's getter never ran as a setter
      expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
      expect(([] as unknown as { polluted?: unknown }).polluted).toBeUndefined();
      expect(decodeKvin(text({ raw: 1, hasOwnProperty: 2 }))).toBe(1);
    });

    it('refuses deep nesting in every form without overflowing the stack: ETOODEEP', () => {
      const levels = 100_000;
      const raw = `${prefix}{"raw":${'['.repeat(levels)}${']'.repeat(levels)}}}`;
      const objects = `${prefix}${'{"ctr":0,"ps":{"a":'.repeat(levels)}1${'}}'.repeat(levels)}}`;
      const arrays = `${prefix}${'{"arr":['.repeat(levels)}1${']}'.repeat(levels)}}`;
      const maps = `${prefix}${'{"mapKeys":{"arr":[1]},"mapVals":{"arr":['.repeat(levels / 2)}1${']}}'.repeat(levels / 2)}}`;
      const json = text({ json: '['.repeat(levels) + ']'.repeat(levels) });
      for (const hostile of [raw, objects, arrays, maps, json]) expect(code(hostile)).toBe(ErrorCode.ETOODEEP);
    });

    it('refuses texts that expand past the limits: ETOOBIG', () => {
      let bomb: unknown = 1;
      for (let i = 0; i < 4; i++) bomb = { arr: [bomb, { lst: 999 }] };
      const payloads: unknown[] = [
        bomb,
        { arr: [1, { lst: 1e9 }] },
        { arr: [], len: 4294967295 },
        { arr: [], ps: { 4000000000: 1 } },
        { arr: [], isl: [{ '@': 4e9, arr: [1] }] },
        { ctr: 9, isl8: [], len: 1e12 },
        { arr: [{ ctr: 2, isl8: [], len: 3_000_000 }, { ctr: 2, isl8: [], len: 3_000_000 }] },
        { ctr: 2, isl16: [], len: 8e6 },
      ];
      for (const payload of payloads) expect([payload, code(text(payload))]).toEqual([payload, ErrorCode.ETOOBIG]);
    });

    it('repeats with lst as kvin does, copying plain data rather than sharing it', () => {
      const back = decodeKvin(text({ arr: [{ raw: { a: 1 } }, { lst: 2 }, 7, { lst: 1 }, { ctr: 19, arg: 0 }, { lst: 1 }] })) as unknown[];
      expect(back).toEqual([{ a: 1 }, { a: 1 }, { a: 1 }, 7, 7, new Date(0), new Date(0)]);
      expect(back[0]).not.toBe(back[1]);
      expect(back[5]).not.toBe(back[6]);
      const kvinRepeats = Array.from({ length: 10 }, () => [1, 2]);
      expect(decodeKvin(reference.serialize(kvinRepeats))).toEqual(kvinRepeats);
    });
  });

  describe('properties (random values; the seed is printed on failure)', () => {
    const key = fc.string({ maxLength: 6 }).filter((name) => name !== '__proto__');
    const leaves = [
      fc.string({ maxLength: 8 }),
      fc.double(),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.date({ noInvalidDate: true }),
      fc.float64Array({ maxLength: 24 }),
      fc.float32Array({ maxLength: 8 }),
      fc.uint8Array({ maxLength: 40 }),
      fc.int16Array({ maxLength: 8 }),
    ];
    const values = (leaf: fc.Arbitrary<unknown>, keyed: (item: unknown) => boolean = () => true) =>
      fc.letrec((tie) => ({
        value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('array'), tie('sparse'), tie('object'), tie('map'), tie('set')),
        array: fc.array(tie('value'), { maxLength: 10 }),
        sparse: fc.sparseArray(tie('value'), { maxLength: 12, maxNumElements: 4 }),
        object: fc.dictionary(key, tie('value'), { maxKeys: 5, noNullPrototype: true }),
        map: fc.array(fc.tuple(tie('value').filter(keyed), tie('value')), { maxLength: 4 }).map((entries) => new Map(entries)),
        set: fc.array(tie('value').filter(keyed), { maxLength: 4 }).map((items) => new Set(items)),
      })).value;
    const value = values(fc.oneof(...leaves, fc.bigInt(), fc.bigInt64Array({ maxLength: 4 })));
    // kvin 9's writer fails on a BigInt inside data it writes as JSON (sparse array islands, short
    // arrays). Its reader makes one array of a raw array repeated with lst, which only shows where
    // identity counts: Set items and Map keys ([[], []] becomes a Set of one item; ours copies it,
    // as it was written).
    const valueKvinWrites = values(fc.oneof(...leaves), (item) => !Array.isArray(item));

    it('what we write reads back the same, in ours and in kvin 9', () => {
      fc.assert(
        fc.property(value, (item) => {
          const written = encodeKvin(item);
          return isDeepStrictEqual(decodeKvin(written), item) && isDeepStrictEqual(reference.deserialize(written), item);
        }),
        { seed, numRuns: 400 },
      );
    });

    it('what kvin 9 writes reads the same in ours as in kvin', () => {
      fc.assert(
        fc.property(valueKvinWrites, (item) => {
          const written = reference.serialize(item);
          return isDeepStrictEqual(decodeKvin(written), reference.deserialize(written));
        }),
        { seed, numRuns: 300 },
      );
    });

    it('mangled texts decode or throw a CommuneError, and pollute nothing', () => {
      const splices = ['{"ctr":"Function","arg":"1"}', '{"seen":99}', '{"lst":100000}', '"__proto__"', '{"raw":{"__proto__":{"p":1}}}', '{"arr":[', ']}', 'null', '{"ctr":9,"isl8":[],"len":9e9}', '"'];
      fc.assert(
        fc.property(valueKvinWrites, fc.boolean(), fc.nat(), fc.nat(), fc.nat({ max: splices.length - 1 }), (item, theirs, at, length, splice) => {
          const written = theirs ? reference.serialize(item) : encodeKvin(item);
          const start = at % (written.length + 1);
          const mangled = written.slice(0, start) + splices[splice] + written.slice(start + (length % 8));
          try {
            decodeKvin(mangled);
          } catch (error) {
            if (!(error instanceof CommuneError)) return false;
          }
          return Object.keys(Object.prototype).length === 0 && ({} as { p?: unknown }).p === undefined;
        }),
        { seed, numRuns: 1000 },
      );
    });
  });
});
