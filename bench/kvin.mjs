#!/usr/bin/env node
// `node bench/kvin.mjs` (after `pnpm build`): the cost of KVIN (libs/protocol kvin.ts) next to
// JSON.stringify / JSON.parse of the nearest JSON value, and next to DCP's kvin 9 package, measured
// in the same run, rounds alternated, the best and the median round reported (never a timed test
// assertion). Texts are decoded as they arrive from a socket (a fresh copy, made untimed): a text
// just built by concatenation would make the decoder pay for flattening it.
//   a. a 10,000-item array of small objects (plain data: KVIN's JSON path)
//   b. a 1 MB Float64Array (JSON: the same numbers as an array)
//   c. 100,000 small results (numbers), one text each
// Environment: BENCH_KVIN_ROUNDS (7); BENCH_KVIN_REFERENCE=0 skips kvin 9 (its writer takes
// seconds on case a: it is quadratic in the number of objects).
import { createRequire } from 'node:module';
import { isDeepStrictEqual } from 'node:util';
import { decodeKvin, encodeKvin } from '@commune/protocol';

const reference = createRequire(import.meta.url)('kvin');
const rounds = Number(process.env.BENCH_KVIN_ROUNDS ?? 7);
const withReference = process.env.BENCH_KVIN_REFERENCE !== '0';

const objects = Array.from({ length: 10_000 }, (_, i) => ({ id: i, name: `item ${i}`, score: i * 1.5, done: i % 2 === 0, tags: ['a', 'b'] }));
const floats = new Float64Array(131_072).map((_, i) => Math.sin(i) * 1000);
const numbers = Array.from({ length: 100_000 }, (_, i) => i * 0.5 + 1);

const cases = [
  {
    name: 'a. 10,000 small objects',
    json: { encode: () => JSON.stringify(objects), decode: (text) => JSON.parse(text) },
    ours: { encode: () => encodeKvin(objects), decode: (text) => decodeKvin(text) },
    kvin: { encode: () => reference.serialize(objects), decode: (text) => reference.deserialize(text), rounds: 1 },
    check: (value) => isDeepStrictEqual(value, objects),
  },
  {
    name: 'b. 1 MB Float64Array',
    json: { encode: () => JSON.stringify(Array.from(floats)), decode: (text) => JSON.parse(text) },
    ours: { encode: () => encodeKvin(floats), decode: (text) => decodeKvin(text) },
    kvin: { encode: () => reference.serialize(floats), decode: (text) => reference.deserialize(text) },
    check: (value) => isDeepStrictEqual(value, floats),
  },
  {
    name: 'c. 100,000 numbers one by one',
    json: { encode: () => numbers.map((n) => JSON.stringify(n)), decode: (texts) => texts.map((text) => JSON.parse(text)) },
    ours: { encode: () => numbers.map((n) => encodeKvin(n)), decode: (texts) => texts.map((text) => decodeKvin(text)) },
    kvin: { encode: () => numbers.map((n) => reference.serialize(n)), decode: (texts) => texts.map((text) => reference.deserialize(text)) },
    check: (value) => isDeepStrictEqual(value, numbers),
  },
];

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const best = (values) => Math.min(...values);
const received = (text) => (Array.isArray(text) ? text.map(received) : Buffer.from(text, 'utf8').toString('utf8'));
const size = (text) => (Array.isArray(text) ? text.reduce((sum, item) => sum + item.length, 0) : text.length);

function timed(action) {
  const start = process.hrtime.bigint();
  const result = action();
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, result };
}

console.log(`KVIN cost: best / median of ${rounds} alternated rounds, ms (kvin 9: ${withReference ? 'case a in one round' : 'skipped'})`);
for (const benchCase of cases) {
  const codecs = withReference ? ['json', 'ours', 'kvin'] : ['json', 'ours'];
  const times = Object.fromEntries(codecs.map((codec) => [codec, { encode: [], decode: [], chars: 0 }]));
  for (let round = 0; round < rounds; round++) {
    for (const codec of codecs) {
      const { encode, decode, rounds: most } = benchCase[codec];
      if (most !== undefined && round >= most) continue;
      const written = timed(encode);
      const arrived = received(written.result);
      const read = timed(() => decode(arrived));
      times[codec].encode.push(written.ms);
      times[codec].decode.push(read.ms);
      times[codec].chars = size(written.result);
      if (codec !== 'json' && !benchCase.check(read.result)) throw new Error(`${benchCase.name}: ${codec} did not read back the value`);
    }
  }
  console.log(`\n${benchCase.name}`);
  for (const [label, pick] of [['best', best], ['median', median]]) {
    const json = { encode: pick(times.json.encode), decode: pick(times.json.decode) };
    for (const codec of codecs) {
      const encode = pick(times[codec].encode);
      const decode = pick(times[codec].decode);
      const ratio = (encode + decode) / (json.encode + json.decode);
      console.log(
        `  ${label.padEnd(6)} ${codec.padEnd(4)}  encode ${encode.toFixed(2).padStart(9)}  decode ${decode.toFixed(2).padStart(8)}  ` +
          `both x${ratio.toFixed(2).padStart(6)} of JSON (encode x${(encode / json.encode).toFixed(2)}, decode x${(decode / json.decode).toFixed(2)})` +
          (label === 'best' ? `  ${times[codec].chars.toLocaleString('en')} chars` : ''),
      );
    }
  }
}
