import { inspect } from 'node:util';
import { ErrorCode, JobSpecSchema, deploySigningPayload, recoverRequestSigner, SignedKind } from '@commune/protocol';
import { Distribution, MultiRangeObject, SparseRangeObject, toInputSet } from '@commune/ranges';
import * as sdk from './index.js';
import { createCompute } from './compute.js';
import { createResultHandle, type ResultHandle } from './result-handle.js';
import { stats } from './stats.js';
import { contextFor, FakeLink, jobStatus, testWallet } from './test-support.js';

/* eslint-disable no-var */
// A global of the sandbox, declared so the work functions below type-check.
declare var progress: (n?: number | string) => boolean;
/* eslint-enable no-var */

const codeMatching = (code: string) => expect.objectContaining({ code });
const jobId = 'j_0000000001';

function setup() {
  const link = new FakeLink();
  return { link, compute: createCompute(contextFor(link)) };
}

/** A handle filled as a finished job would be, the results arriving in reverse slice order. */
function finishedBackwards(input: unknown, work: (...args: never[]) => unknown): ResultHandle {
  const inputSet = toInputSet(input);
  const store = createResultHandle(inputSet, inputSet.sliceCount);
  for (let i = inputSet.sliceCount - 1; i >= 0; i--) {
    const datum = inputSet.sliceDatum(i);
    store.set(i, inputSet instanceof MultiRangeObject ? work(...(datum as never[])) : work(datum as never));
  }
  return store.handle;
}

describe('compute.for input sets', () => {
  describe('form 3: multi-range objects', () => {
    const { compute } = setup();

    it('an array whose elements are all range objects is form 3 (spec examples 4 and 5)', () => {
      const job = compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], (i: number, j: number) => i * j);
      expect(job.inputSet).toBeInstanceOf(MultiRangeObject);
      expect(job.inputSet.describe()).toEqual({
        kind: 'multi',
        ranges: [{ kind: 'range', range: { start: 1, end: 2 } }, { kind: 'range', range: { start: 3, end: 5 } }],
      });
    });

    it('{ranges: [...]} is form 3, with range objects, sparse range objects and distributions as its loops', () => {
      const job = compute.for({ ranges: [{ start: 1, end: 2 }, { sparse: [{ start: 7, end: 7 }, { start: 9, end: 9 }] }, stats.set.random(2, 0, 1, 5)] }, () => 0);
      expect(job.inputSet.sliceCount).toBe(8);
      expect(job.inputSet.describe().kind).toBe('multi');
    });

    it('an array of anything else stays form 4 data, and so do range objects passed as a non-Array iterable', () => {
      expect(compute.for([{ start: 1, end: 2 }, 3], () => 0).inputSet.describe()).toEqual({ kind: 'array', values: [{ start: 1, end: 2 }, 3] });
      expect(compute.for([{ start: 1, end: 2 }].values(), () => 0).inputSet.describe()).toEqual({ kind: 'array', values: [{ start: 1, end: 2 }] });
    });

    it('refuses a nested or empty multi-range with EINVAL', () => {
      expect(() => compute.for({ ranges: [] }, () => 0)).toThrow(codeMatching(ErrorCode.EINVAL));
      expect(() => compute.for({ ranges: [{ ranges: [{ start: 1, end: 2 }] }] } as never, () => 0)).toThrow(codeMatching(ErrorCode.EINVAL));
    });
  });

  describe('form 1: sparse range objects and distributions', () => {
    const { compute } = setup();

    it('a sparse range object travels as its ranges, however many elements they hold', () => {
      const job = compute.for({ sparse: [{ start: 1, end: 3 }, { start: 1e12, end: 1e12 + 1e9 }] }, () => 0);
      expect(job.inputSet).toBeInstanceOf(SparseRangeObject);
      expect(job.inputSet.describe()).toEqual({ kind: 'sparse', sparse: [{ start: 1, end: 3 }, { start: 1e12, end: 1e12 + 1e9 }] });
      expect(job.inputSet.sliceCount).toBe(3 + 1e9 + 1);
    });

    it('a distribution travels as its descriptor, seed included', () => {
      const job = compute.for(stats.set.normalRNG(10, 100, 0.2, 42), () => 0);
      expect(job.inputSet.describe()).toEqual({ kind: 'distribution', distribution: 'normalRNG', n: 10, parameters: [100, 0.2], seed: '000000000000002a' });
    });
  });
});

describe('stats', () => {
  it("is the SDK's stats export and compute.stats (the spec's require('stats'))", () => {
    expect(sdk.stats).toBe(stats);
    expect(setup().compute.stats).toBe(stats);
    expect(Object.keys(stats.set).sort()).toEqual(['normalRNG', 'random', 'randomInt']);
  });

  it('creates distributions that record their seed: a random one by default, the given one otherwise', () => {
    const first = stats.set.random(5, 0, 1);
    expect(first).toBeInstanceOf(Distribution);
    expect(first.seed).toMatch(/^[0-9a-f]{16}$/);
    expect(stats.set.random(5, 0, 1).seed).not.toBe(first.seed);
    expect([...stats.set.random(5, 0, 1, first.seed)]).toEqual([...first]);
    expect(stats.set.randomInt(3, 1, 7, 99n).seed).toBe('0000000000000063');
  });

  // dcp-client 5.6.1's stats.set.normalRNG(n) has mean 0 and standard deviation 1 (its params were [0, 1]); so does ours.
  it('normalRNG defaults to mean 0 and standard deviation 1, as in dcp-client', () => {
    expect(stats.set.normalRNG(3).parameters).toEqual([0, 1]);
  });

  it('refuses bad arguments with EINVAL', () => {
    expect(() => stats.set.random(3, 1, 0)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => stats.set.randomInt(3, 0.5, 3)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => stats.set.normalRNG(-1, 0, 1)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => (stats.set.random as (n: number) => unknown)(3)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => stats.set.random(3, 0, 1, 'seed')).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});

describe('result handles of multi-range jobs', () => {
  const example4 = () => finishedBackwards([{ start: 1, end: 2 }, { start: 3, end: 5 }], (i: number, j: number) => i * j);

  it('nest one level per range, as spec example 4 prints', () => {
    const results = example4();
    expect(results).toEqual([[3, 4, 5], [6, 8, 10]]);
    expect(inspect(results)).toBe('[ [ 3, 4, 5 ], [ 6, 8, 10 ] ]');
    expect(Object.keys(results)).toEqual(['0', '1']);
  });

  it('nest as spec example 5 prints, three ranges nesting three deep', () => {
    expect(finishedBackwards([{ start: 1, end: 2 }, { start: 3, end: 5 }], (i: number, j: number) => [i, j, i * j])).toEqual([
      [[1, 3, 3], [1, 4, 4], [1, 5, 5]],
      [[2, 3, 6], [2, 4, 8], [2, 5, 10]],
    ]);
    expect(finishedBackwards({ ranges: [{ start: 0, end: 1 }, { start: 0, end: 1 }, { start: 0, end: 2 }] }, (a: number, b: number, c: number) => a * 100 + b * 10 + c)).toEqual([
      [[0, 1, 2], [10, 11, 12]],
      [[100, 101, 102], [110, 111, 112]],
    ]);
  });

  it('keys(), key(n) and entries() give the argument tuples, values() the flat results, in slice order', () => {
    const results = example4();
    expect(results.keys()).toEqual([[1, 3], [1, 4], [1, 5], [2, 3], [2, 4], [2, 5]]);
    expect(results.key(4)).toEqual([2, 4]);
    expect(results.values()).toEqual([3, 4, 5, 6, 8, 10]);
    expect(results.entries()).toEqual([[[1, 3], 3], [[1, 4], 4], [[1, 5], 5], [[2, 3], 6], [[2, 4], 8], [[2, 5], 10]]);
    expect(results.fromEntries()).toEqual({});
  });

  it('lookupValue(tuple) finds work(i, j) arithmetically; inputs outside the set are ERANGE', () => {
    const results = example4();
    expect(results.lookupValue([2, 4])).toBe(8);
    expect(results.lookupValue(['1', '5'])).toBe(5);
    for (const outside of [[3, 4], [2, 6], [2], [1, 3, 0], 2, 'x']) expect(() => results.lookupValue(outside)).toThrow(codeMatching(ErrorCode.ERANGE));
  });

  it('leave holes where results are missing, and ENOTFOUND for an input whose result is not in yet', () => {
    const store = createResultHandle(toInputSet([{ start: 1, end: 2 }, { start: 3, end: 5 }]), 6);
    store.set(4, 8);
    expect(store.handle.length).toBe(2);
    expect(0 in store.handle).toBe(false);
    expect(store.handle[1]).toEqual([undefined, 8, undefined]);
    expect(Object.keys(store.handle[1] as unknown[])).toEqual(['1']);
    expect(store.handle.values()).toEqual([8]);
    expect(() => store.handle.lookupValue([1, 3])).toThrow(codeMatching(ErrorCode.ENOTFOUND));
  });
});

describe('result handles of sparse and distribution jobs', () => {
  it('lookupValue() locates sparse inputs arithmetically, and ERANGE outside', () => {
    const results = finishedBackwards({ sparse: [{ start: 1, end: 3 }, { start: 10, end: 14, step: 2 }] }, (i: number) => i * 2);
    expect(results).toEqual([2, 4, 6, 20, 24, 28]);
    expect(results.lookupValue(12)).toBe(24);
    expect(() => results.lookupValue(11)).toThrow(codeMatching(ErrorCode.ERANGE));
  });

  it('lookupValue() finds a distribution value', () => {
    const distribution = stats.set.random(20, 0, 1, 3);
    const results = finishedBackwards(distribution, (x: number) => x * 2);
    expect(results.lookupValue(distribution.datum(7))).toBe(distribution.datum(7) * 2);
    expect(() => results.lookupValue(5)).toThrow(codeMatching(ErrorCode.ERANGE));
  });
});

describe('exec() of a multi-range job', () => {
  it('deploys the signed descriptor and nests the results as they arrive', async () => {
    const { link, compute } = setup();
    const job = compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], (i: number, j: number) => (progress(1), i * j));
    const running = job.exec();
    const sink = await link.nextAttach();
    const [{ job: spec, signature }] = link.deploys;
    expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(spec), signature)).toBe(testWallet.address);
    expect(JobSpecSchema.parse(spec)).toEqual(spec);
    expect(spec.inputSet).toEqual({ kind: 'multi', ranges: [{ kind: 'range', range: { start: 1, end: 2 } }, { kind: 'range', range: { start: 3, end: 5 } }] });
    expect(job.status.total).toBe(6);
    sink.onResults([5, 0, 3, 1, 4, 2].map((sliceIndex) => ({ sliceIndex, value: [3, 4, 5, 6, 8, 10][sliceIndex] })));
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 6, distributed: 6, computed: 6 }));
    const results = await running;
    expect(results).toEqual([[3, 4, 5], [6, 8, 10]]);
    expect(results).toBe(job.results);
  });
});

describe('localExec() of the new input sets', () => {
  const { compute } = setup();

  it('spreads the tuple into work(i, j, ...arguments) and nests the results (spec example 4, with an argument)', async () => {
    const results = await compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], (i: number, j: number, k: number) => (progress(1), i * j + k), [100]).localExec(2);
    expect(results).toEqual([[103, 104, 105], [106, 108, 110]]);
  });

  it('runs spec example 5, whose work never calls progress()', async () => {
    const results = await compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], function (i: number, j: number) {
      return [i, j, i * j];
    }).localExec();
    expect(results).toEqual([[[1, 3, 3], [1, 4, 4], [1, 5, 5]], [[2, 3, 6], [2, 4, 8], [2, 5, 10]]]);
  });

  it('gives a grouped loop its group array as one argument', async () => {
    const results = await compute.for([{ start: 1, end: 2 }, { start: 10, end: 13, group: 2 }], (i: number, group: number[]) => (progress(1), i * group.length + group[0]!)).localExec();
    expect(results).toEqual([[12, 14], [14, 16]]);
  });

  it('does not spread array data of a form 4 job', async () => {
    const results = await compute.for([[1, 2], [3, 4]], (pair: number[]) => (progress(1), pair.length)).localExec();
    expect(results).toEqual([2, 2]);
  });

  it('runs a distribution job with the same numbers the distribution gives here', async () => {
    const distribution = stats.set.normalRNG(20, 100, 0.2);
    const results = await compute.for(distribution, (x: number) => (progress(1), x)).localExec(2);
    expect(Array.from(results)).toEqual([...distribution]);
  });
});
