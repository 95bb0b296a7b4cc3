import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { init, stats, type Job, type ResultHandle } from '@commune/client';
import { isolatedEnvironment } from '../support/services.js';
import { startTwoReplicaCommune, type RunningProcess, type TwoReplicaCommune } from '../support/processes.js';

/**
 * Conformance of every compute.for input form (spec "compute.for", "Range Objects", "Sparse Range
 * Objects", "Distribution Objects", "Example Programs" 1-6): each job runs twice, through
 * job.exec() on a live Commune (two scheduler replicas, `commune-worker` processes) and through
 * job.localExec(), and both must give exactly the expected results.
 */
describe('compute.for input sets (conformance, e2e)', () => {
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn' });
  const home = mkdtempSync(join(tmpdir(), 'commune-conformance-'));
  let replicaA: RunningProcess & { url: string };
  const workers: RunningProcess[] = [];
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  let commune: TwoReplicaCommune;

  beforeAll(async () => {
    commune = await startTwoReplicaCommune(env);
    ({ replicaA } = commune);
    workers.push(...commune.workers);
    ({ compute } = await init({ scheduler: replicaA.url, home }));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(workers.map((worker) => worker.stop()));
    await commune?.stop();
  }, 30_000);

  // Made once, so both runs use the same (randomly seeded) distribution object.
  const defaultSeeded = stats.set.random(40, -5, 5);
  const normal = stats.set.normalRNG(64, 100, 0.2, 20261122);
  const integers = stats.set.randomInt(50, 1, 7, 7n);

  interface Case {
    name: string;
    make: () => Job;
    expected: unknown;
    /** Further checks of the result handle, run after both exec() and localExec(). */
    check?: (results: ResultHandle) => void;
  }

  const cases: Case[] = [
    {
      name: 'Example 1: compute.for() form 2b',
      make: () => compute.for(1, 3, function (i: number) {
        progress('100%');
        return i * 10;
      }),
      expected: [10, 20, 30],
      check: (results) => {
        expect(results.entries()).toEqual([['1', 10], ['2', 20], ['3', 30]]);
        expect(results.fromEntries()).toEqual({ 1: 10, 2: 20, 3: 30 });
        expect(results.keys()).toEqual(['1', '2', '3']);
        expect(results.values()).toEqual([10, 20, 30]);
        expect(results.key(2)).toBe('3');
      },
    },
    {
      name: 'Example 2: compute.for() form 1, step overflow',
      make: () => compute.for({ start: 10, end: 13, step: 2 }, (i: number) => progress(1) && i),
      expected: [10, 12],
    },
    {
      name: 'Example 3: compute.for() form 1 with group',
      make: () => compute.for({ start: 10, end: 13, group: 2 }, (i: number[]) => progress(1) && i[1]! - i[0]!),
      expected: [1, 1],
    },
    {
      name: 'Example 4: compute.for() form 3',
      make: () => compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], (i: number, j: number) => (progress(1), i * j)),
      expected: [[3, 4, 5], [6, 8, 10]],
      check: (results) => {
        expect(results.keys()).toEqual([[1, 3], [1, 4], [1, 5], [2, 3], [2, 4], [2, 5]]);
        expect(Array.from(results.entries())[4]).toEqual([[2, 4], 8]);
        expect(results.values()).toEqual([3, 4, 5, 6, 8, 10]);
        expect(results.lookupValue([2, 4])).toBe(8);
        expect(() => results.lookupValue([3, 3])).toThrow(expect.objectContaining({ code: 'ERANGE' }));
      },
    },
    {
      name: 'Example 5: compute.for(), form 3',
      make: () => compute.for([{ start: 1, end: 2 }, { start: 3, end: 5 }], function (i: number, j: number) {
        return [i, j, i * j];
      }),
      expected: [[[1, 3, 3], [1, 4, 4], [1, 5, 5]], [[2, 3, 6], [2, 4, 8], [2, 5, 10]]],
    },
    {
      name: 'Example 6: compute.for() form 4',
      make: () => compute.for([123, 456], function (i: number) {
        progress(1);
        return i;
      }),
      expected: [123, 456],
    },
    {
      name: 'form 3 as {ranges: [...]}: three loops, a grouped loop and work arguments',
      make: () => compute.for(
        { ranges: [{ start: 1, end: 2 }, { start: 0, end: 0.2, step: 0.1 }, { start: 10, end: 13, group: 2 }] },
        (i: number, x: number, group: number[], k: number) => (progress(1), `${i}:${x}:${group.join('+')}:${k}`),
        ['k'],
      ),
      expected: [
        [['1:0:10+11:k', '1:0:12+13:k'], ['1:0.1:10+11:k', '1:0.1:12+13:k'], ['1:0.2:10+11:k', '1:0.2:12+13:k']],
        [['2:0:10+11:k', '2:0:12+13:k'], ['2:0.1:10+11:k', '2:0.1:12+13:k'], ['2:0.2:10+11:k', '2:0.2:12+13:k']],
      ],
    },
    {
      name: 'sparse range object',
      make: () => compute.for({ sparse: [{ start: 1, end: 3 }, { start: 10, end: 14, step: 2 }] }, (i: number) => progress(1) && i * 2),
      expected: [2, 4, 6, 20, 24, 28],
      check: (results) => {
        expect(results.lookupValue(12)).toBe(24);
        expect(() => results.lookupValue(11)).toThrow(expect.objectContaining({ code: 'ERANGE' }));
      },
    },
    {
      name: 'sparse range object whose parts keep their own group',
      make: () => compute.for({ sparse: [{ start: 1, end: 3, group: 2 }, { start: 7, end: 8 }] }, (i: number | number[]) => (progress(1), JSON.stringify(i))),
      expected: ['[1,2]', '[3]', '7', '8'],
    },
    {
      name: 'group without step, the last group shorter',
      make: () => compute.for({ start: 1, end: 5, group: 2 }, (group: number[]) => (progress(1), group.reduce((sum, x) => sum + x, 0))),
      expected: [3, 7, 5],
    },
    {
      name: 'group with step',
      make: () => compute.for({ start: 0, end: 10, step: 3, group: 2 }, (group: number[]) => (progress(1), group)),
      expected: [[0, 3], [6, 9]],
    },
    {
      name: 'an ES6 generator',
      make: () => compute.for((function* () {
        yield 'red';
        yield { colour: 'green' };
        yield [3];
      })(), (x: unknown) => (progress(1), JSON.stringify(x))),
      expected: ['"red"', '{"colour":"green"}', '[3]'],
    },
    {
      name: 'a generator function',
      make: () => compute.for(function* () {
        for (let n = 1; n <= 4; n++) yield n * n;
      }, (x: number) => progress(1) && x + 1),
      expected: [2, 5, 10, 17],
    },
    {
      name: 'a Set',
      make: () => compute.for(new Set(['a', 'b']), (x: string) => (progress(1), x.toUpperCase())),
      expected: ['A', 'B'],
    },
    {
      name: 'distribution stats.set.normalRNG(64, 100, 0.2, seed)',
      make: () => compute.for(normal, (x: number) => progress(1) && x),
      expected: [...normal],
    },
    {
      name: 'distribution stats.set.randomInt(50, 1, 7, seed)',
      make: () => compute.for(integers, (x: number) => progress(1) && x),
      expected: [...integers],
      check: (results) => expect(Array.from(results.values()).every((x) => Number.isInteger(x) && (x as number) >= 1 && (x as number) < 7)).toBe(true),
    },
    {
      name: 'distribution stats.set.random(40, -5, 5) with its default random seed',
      make: () => compute.for(defaultSeeded, (x: number) => progress(1) && x),
      expected: [...defaultSeeded],
      check: (results) => expect(Array.from(results.values()).every((x) => (x as number) >= -5 && (x as number) < 5)).toBe(true),
    },
    {
      name: 'a distribution as a loop of a multi-range',
      make: () => compute.for([{ start: 1, end: 2 }, stats.set.randomInt(3, 0, 100, 11)], (i: number, x: number) => (progress(1), i * 1000 + x)),
      expected: [1, 2].map((i) => [...stats.set.randomInt(3, 0, 100, 11)].map((x) => i * 1000 + x)),
    },
  ];

  const execResults = new Map<string, string>();

  for (const testCase of cases) {
    it(`${testCase.name} through job.exec()`, async () => {
      const results = await testCase.make().exec();
      expect(JSON.stringify(results)).toBe(JSON.stringify(testCase.expected));
      testCase.check?.(results);
      execResults.set(testCase.name, JSON.stringify(results));
    }, 30_000);

    it(`${testCase.name} through job.localExec() gives the same results`, async () => {
      const results = await testCase.make().localExec(2);
      expect(JSON.stringify(results)).toBe(JSON.stringify(testCase.expected));
      testCase.check?.(results);
      if (execResults.has(testCase.name)) expect(JSON.stringify(results)).toBe(execResults.get(testCase.name));
    }, 30_000);
  }

  it('keeps 10^9-slice multi-range and sparse jobs lazy on the scheduler: deployed as descriptors, dispatched slice by slice', async () => {
    const multi = compute.for({ ranges: [{ start: 1, end: 1e5 }, { start: 1, end: 1e4 }] }, (i: number, j: number) => (progress(1), [i, j]));
    const sparse = compute.for({ sparse: [{ start: 0, end: 5e8 - 1 }, { start: 1e12, end: 1e12 + 5e8 - 1 }] }, (i: number) => progress(1) && i);
    const first = (job: Job) => new Promise<{ sort: number; result: { result: unknown } }>((resolve) => job.once('result', resolve));
    const firstResults = [first(multi), first(sparse)];
    const runs = [multi.exec(), sparse.exec()];
    for (const run of runs) run.catch(() => undefined);
    const [multiResult, sparseResult] = await Promise.all(firstResults);
    expect(multi.status.total).toBe(1e9);
    expect(sparse.status.total).toBe(1e9);
    const started = Date.now();
    expect(await compute.status(multi)).toMatchObject({ total: 1e9 });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(multiResult.result.result).toEqual([Math.floor(multiResult.sort / 1e4) + 1, (multiResult.sort % 1e4) + 1]);
    expect(sparseResult.result.result).toBe(sparseResult.sort < 5e8 ? sparseResult.sort : 1e12 + sparseResult.sort - 5e8);
    await Promise.all([multi.cancel(), sparse.cancel()]);
    for (const run of runs) await expect(run).rejects.toMatchObject({ code: 'ECANCELLED' });
  }, 60_000);
});

declare function progress(value?: number | string): boolean;
