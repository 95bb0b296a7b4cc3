import { createRequire } from 'node:module';
import { checkBounds, Limits } from '@commune/protocol';
import { seededRandom } from '../../../../test/support/random.js';
import { boundedPacketBounds, createBoundedParser, PacketRefusedError, scanPacket, type PacketBounds, type PacketRefusal } from './bounded-parser.js';

type Packet = { type: number; nsp: string; id?: number; data?: unknown };

/** socket.io-parser as socket.io loads it: the reference the bounded decoder must agree with. */
const stock = createRequire(createRequire(import.meta.url).resolve('socket.io'))('socket.io-parser') as {
  Encoder: new () => { encode(packet: Packet): (string | Buffer)[] };
  Decoder: new () => { add(chunk: unknown): void; on(event: 'decoded', listener: (packet: Packet) => void): void };
};

const seed = Number(process.env.TEST_SEED ?? Date.now() % 1_000_000);
const deepJson = (depth: number, leaf = '0') => '['.repeat(depth) + leaf + ']'.repeat(depth);
const encode = (packet: Packet) => new stock.Encoder().encode(packet);

function decodeWith(decoder: { add(chunk: unknown): void; on(event: 'decoded', listener: (packet: Packet) => void): void }, chunks: (string | Buffer)[]): Packet[] {
  const out: Packet[] = [];
  decoder.on('decoded', (packet) => out.push(packet));
  for (const chunk of chunks) decoder.add(chunk);
  return out;
}

/** Values in a decoded value, as checkBounds counts them (keys are not values). */
function countValues(value: unknown): number {
  let count = 0;
  const stack = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    count++;
    if (item !== null && typeof item === 'object' && !Buffer.isBuffer(item)) stack.push(...(Array.isArray(item) ? item : Object.values(item)));
  }
  return count;
}

/** Random JSON-able values: nested arrays and objects, strings full of quotes, escapes, brackets and non-ASCII. */
function generator(random: () => number) {
  const int = (n: number) => Math.floor(random() * n);
  const alphabet = ['a', 'z', '"', '\\', '[', ']', '{', '}', ',', ':', ' ', '\n', '\u00e9', '\u2028', '\ud83d\ude00', '\\"', '0'];
  const text = (max: number) => Array.from({ length: int(max) }, () => alphabet[int(alphabet.length)]).join('');
  const value = (depth: number): unknown => {
    const roll = random();
    if (depth <= 0 || roll < 0.3) {
      const scalar = int(7);
      return [() => int(1e6) - 5e5, () => random() * 1e-3, () => text(12), () => text(80), () => true, () => null, () => false][scalar]!();
    }
    const size = int(5);
    if (roll < 0.65) return Array.from({ length: size }, () => value(depth - 1));
    return Object.fromEntries(Array.from({ length: size }, (_, i) => [text(6) + i, value(depth - 1)]));
  };
  /** A chain `levels` deep with random values along it. */
  const deep = (levels: number): unknown => {
    let current = value(2);
    for (let i = 0; i < levels; i++) current = random() < 0.5 ? [value(1), current] : { [text(4)]: current, x: value(1) };
    return current;
  };
  return { value, deep, int };
}

describe('bounded socket.io parser', () => {
  const random = seededRandom(seed);
  const gen = generator(random);

  it(`leaves every valid packet as it is and decodes it as socket.io-parser does (seed ${seed})`, () => {
    const parser = createBoundedParser();
    for (let n = 0; n < 400; n++) {
      const data: unknown[] = [`event${gen.int(3)}`, n % 4 === 0 ? gen.deep(gen.int(120)) : gen.value(6)];
      if (n % 5 === 0) data.push(gen.value(3));
      const packet: Packet = { type: n % 7 === 0 ? 3 : 2, nsp: n % 3 === 0 ? '/' : n % 3 === 1 ? '/worker' : '/wo"rk[er', data };
      if (n % 2 === 0) packet.id = gen.int(100_000);
      const chunks = encode(packet);
      const scan = scanPacket(chunks[0] as string);
      expect(scan).toEqual({ ok: true, text: chunks[0], cut: 0 });
      expect(decodeWith(new parser.Decoder() as never, chunks)).toEqual(decodeWith(new stock.Decoder(), chunks));
    }
  });

  it('decodes binary packets (placeholders and attachments) as socket.io-parser does', () => {
    const parser = createBoundedParser();
    const data = ['task:events', { a: Buffer.from([1, 2, 3]), b: [gen.value(3), Buffer.from('xyz')], deep: JSON.parse(deepJson(100)) }];
    const chunks = encode({ type: 2, nsp: '/worker', id: 4, data });
    expect(typeof chunks[0]).toBe('string');
    expect((chunks[0] as string).startsWith('52-/worker,4[')).toBe(true);
    expect(decodeWith(new parser.Decoder() as never, chunks)).toEqual(decodeWith(new stock.Decoder(), chunks));
  });

  it(`counts values exactly (seed ${seed}): a packet of maxNodes values passes, one more is refused (nodes)`, () => {
    for (let n = 0; n < 200; n++) {
      const data = ['x', gen.value(5), ...(n % 3 === 0 ? [[], {}, [[]], [{}], { a: [] }] : [])];
      const text = encode({ type: 2, nsp: '/', data })[0] as string;
      const values = countValues(data);
      const bounds: PacketBounds = { maxDepth: 64, maxNodes: values, maxAttachments: 10 };
      expect(scanPacket(text, bounds)).toMatchObject({ ok: true, cut: 0 });
      expect(scanPacket(text, { ...bounds, maxNodes: values - 1 })).toMatchObject({ ok: false, reason: 'nodes' });
    }
  });

  it(`cuts containers deeper than maxDepth, so every depth check a handler makes still fails, and nothing deeper is parsed (seed ${seed})`, () => {
    const parser = createBoundedParser({}, { maxDepth: 12, maxNodes: 1_000_000, maxAttachments: 10 });
    for (let n = 0; n < 200; n++) {
      const payload = n % 2 === 0 ? gen.deep(5 + gen.int(30)) : gen.value(16);
      const [decoded] = decodeWith(new parser.Decoder() as never, encode({ type: 2, nsp: '/worker', id: 1, data: ['x', payload] }));
      const cutPayload = (decoded!.data as unknown[])[1];
      // Packet level 2 is the payload: a check of depth d on it looks at levels up to d + 2 <= maxDepth + 1.
      for (let depth = 1; depth <= 11; depth++) {
        const bounds = { maxDepth: depth, maxNodes: 1e9, maxStringChars: 1e9 };
        expect(checkBounds(cutPayload, bounds) === 'depth').toBe(checkBounds(payload, bounds) === 'depth');
      }
      expect(checkBounds(cutPayload, { maxDepth: 12, maxNodes: 1e9, maxStringChars: 1e9 })).toBeNull();
    }
  });

  it('with the scheduler bounds, a payload within Limits.maxValueDepth (and a result at its depth in task:results) is untouched; a deeper one is cut and still ETOODEEP', () => {
    const result = (depth: number) => `2/worker,1["task:results",{"taskId":"t","jobId":"j","outcomes":[{"sliceIndex":0,"status":"ok","elapsedMs":1,"value":${deepJson(depth)}}]}]`;
    expect(scanPacket(result(Limits.maxValueDepth))).toMatchObject({ ok: true, cut: 0 });
    expect(scanPacket(`2/worker,1["task:request",${deepJson(Limits.maxValueDepth)}]`)).toMatchObject({ ok: true, cut: 0 });
    const parser = createBoundedParser();
    for (const depth of [Limits.maxValueDepth + 1, 20_000, 1_000_000]) {
      const [decoded] = decodeWith(new parser.Decoder() as never, [result(depth)]);
      const value = ((decoded!.data as [string, { outcomes: { value: unknown }[] }])[1]).outcomes[0]!.value;
      expect(checkBounds(value, { maxDepth: Limits.maxValueDepth, maxNodes: Limits.maxValueNodes, maxStringChars: 1e9 })).toBe('depth');
      expect(checkBounds(value, { maxDepth: boundedPacketBounds.maxDepth, maxNodes: Limits.maxValueNodes, maxStringChars: 1e9 })).toBeNull();
    }
  });

  it('reads strings as JSON does: brackets, escaped quotes and backslashes inside them count for nothing', () => {
    const bounds: PacketBounds = { maxDepth: 4, maxNodes: 100, maxAttachments: 10 };
    for (const inner of ['[[[[[[[[', '\\"[[[[[[[[\\"', '\\\\', 'x'.repeat(31) + '\\"' + '[['.repeat(40), 'y'.repeat(40) + '\\\\\\"' + '{'.repeat(20), '\\\\'.repeat(40)]) {
      const text = `2/,["x","${inner}",[[1]]]`;
      expect(JSON.parse(text.slice(3))).toBeTruthy();
      expect(scanPacket(text, bounds)).toEqual({ ok: true, text, cut: 0 });
      // The same string followed by a value too deep is cut after it, not before.
      const deep = `2/,["x","${inner}",${deepJson(8)}]`;
      const scan = scanPacket(deep, bounds);
      expect(scan).toMatchObject({ ok: true, cut: 1 });
      expect(JSON.parse((scan as { text: string }).text.slice(3))).toEqual(['x', JSON.parse(`"${inner}"`), [[[[]]]]]);
    }
  });

  it('starts where socket.io-parser finds the data: a namespace holding quotes and brackets hides nothing', () => {
    const parser = createBoundedParser({}, { maxDepth: 6, maxNodes: 1000, maxAttachments: 10 });
    const text = `2/wo"r[k{er,17["x",${deepJson(50)}]`;
    const [bounded] = decodeWith(new parser.Decoder() as never, [text]);
    const [reference] = decodeWith(new stock.Decoder(), [text]);
    expect(bounded!.nsp).toBe(reference!.nsp);
    expect(bounded!.id).toBe(17);
    expect(checkBounds(bounded!.data, { maxDepth: 7, maxNodes: 1e9, maxStringChars: 1e9 })).toBeNull();
  });

  it('refuses, without parsing, too many values, too many attachments and brackets or strings that do not close; the decoder throws (socket.io closes the connection) and reports why', () => {
    const refusals: PacketRefusal[] = [];
    const parser = createBoundedParser({ refused: (reason) => refusals.push(reason) });
    const count = Math.floor((Limits.maxMessageBytes - 64) / 3);
    const cases: [string, PacketRefusal][] = [
      [`2/worker,1["task:request",[${Array(count).fill('[]').join(',')}]]`, 'nodes'],
      [`2/worker,1["task:request",[${Array(Limits.maxValueNodes + 100).fill('0').join(',')}]]`, 'nodes'],
      ['511-/worker,1["task:events",{"_placeholder":true,"num":0}]', 'attachments'],
      [`2/worker,1["task:request",${'['.repeat(2_000_000)}]`, 'malformed'],
      [`2/worker,1["task:request",${'['.repeat(500)}"${'x'.repeat(500)}`, 'malformed'],
      [`2/worker,1["task:request",${deepJson(300)}]]]`, 'malformed'],
    ];
    for (const [text, reason] of cases) {
      expect(scanPacket(text)).toMatchObject({ ok: false, reason });
      expect(() => new parser.Decoder().add(text)).toThrow(PacketRefusedError);
    }
    expect(refusals).toEqual(cases.map(([, reason]) => reason));
  });

  it('takes a 4 MiB nested packet apart cheaply: cut to maxDepth, decoded, reported', () => {
    const cuts: number[] = [];
    const parser = createBoundedParser({ cut: (n) => cuts.push(n) });
    const levels = Math.floor((Limits.maxMessageBytes - 64) / 2);
    const [decoded] = decodeWith(new parser.Decoder() as never, [`2/worker,1["task:request",${deepJson(levels)}]`]);
    expect(checkBounds((decoded!.data as unknown[])[1], { maxDepth: Limits.maxValueDepth, maxNodes: Limits.maxValueNodes, maxStringChars: 1e9 })).toBe('depth');
    expect(cuts).toEqual([1]);
  });

  it('refuses a binary packet nested too deep (depth) before socket.io-parser rebuilds its placeholders recursively', () => {
    const refusals: PacketRefusal[] = [];
    const parser = createBoundedParser({ refused: (reason) => refusals.push(reason) });
    const text = `51-/worker,4["task:events",${deepJson(20_000, '{"_placeholder":true,"num":0}')}]`;
    expect(() => new parser.Decoder().add(text)).toThrow(PacketRefusedError);
    expect(refusals).toEqual(['depth']);
    // What it protects from: the stock decoder overflows its stack on this packet's attachment.
    expect(() => decodeWith(new stock.Decoder(), [text, Buffer.from([1, 2, 3])])).toThrow(RangeError);
    // A binary packet within the depth bound is decoded as usual.
    const shallow = `51-/worker,4["task:events",${deepJson(100, '{"_placeholder":true,"num":0}')}]`;
    expect(decodeWith(new parser.Decoder() as never, [shallow, Buffer.from([1, 2, 3])])).toEqual(decodeWith(new stock.Decoder(), [shallow, Buffer.from([1, 2, 3])]));
  });

  it('a listener that throws changes nothing', () => {
    const parser = createBoundedParser({ refused: () => { throw new Error('metrics down'); }, cut: () => { throw new Error('metrics down'); } });
    expect(() => new parser.Decoder().add(`2/,["x",${'['.repeat(1000)}]`)).toThrow(PacketRefusedError);
    expect(decodeWith(new parser.Decoder() as never, [`2/,["x",${deepJson(1000)}]`])).toHaveLength(1);
  });
});
