import { afterEach, describe, expect, it } from '@jest/globals';
import { hashOf, type SliceOutcome } from '@commune/protocol';
import { SandboxPool, workHashOf, type SandboxJob, type SandboxModules } from './index.js';

/** require() inside the sandbox (spec "Worker Environment": require(), job.requires()). */

let jobCounter = 0;
function makeJob(work: string, modules?: SandboxModules): SandboxJob {
  jobCounter++;
  return {
    jobId: `j_modules${String(jobCounter).padStart(8, '0')}`,
    workHash: workHashOf(work),
    work,
    arguments: [],
    public: {},
    ...(modules ? { modules } : {}),
  };
}

/** A module table from {id: source}, `main` mapping the work function's specifiers, `requires` each file's. */
function modulesOf(main: Record<string, string>, files: Record<string, string>, requires: Record<string, Record<string, string>> = {}): SandboxModules {
  const list = Object.entries(files).map(([id, source]) => ({ id, source, hash: hashOf(source), requires: requires[id] ?? {} }));
  return { hash: hashOf({ main, files: list.map(({ id, hash, requires: map }) => ({ id, hash, requires: map })) }), main, files: list };
}

const pools: SandboxPool[] = [];
function newPool(size = 1): SandboxPool {
  const pool = new SandboxPool(size, { progressTimeoutMs: 5000 });
  pools.push(pool);
  return pool;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

async function run(pool: SandboxPool, job: SandboxJob, data: unknown[]): Promise<SliceOutcome[]> {
  const outcomes: SliceOutcome[] = [];
  await pool.run(job, data.map((datum, sliceIndex) => ({ sliceIndex, datum })), {
    onOutcome: (_jobId, outcome) => outcomes.push(outcome),
    onConsole: () => undefined,
    onCustom: () => undefined,
  });
  return outcomes.sort((a, b) => a.sliceIndex - b.sliceIndex);
}
const valuesOf = (outcomes: SliceOutcome[]) =>
  outcomes.map((outcome) => {
    if (outcome.status !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(outcome)}`);
    return outcome.value;
  });
const errorOf = (outcome: SliceOutcome | undefined) => {
  if (outcome?.status !== 'error') throw new Error(`expected an error, got ${JSON.stringify(outcome)}`);
  return outcome.error;
};

const refiner = modulesOf(
  { './refiner': 'fixtures/refiner.js' },
  {
    'fixtures/refiner.js': "const { scale } = require('./lib/scale'); exports.refine = (x) => scale(x) + 1;",
    'fixtures/lib/scale.js': 'module.exports = { scale: (x) => x * 2 };',
  },
  { 'fixtures/refiner.js': { './lib/scale': 'fixtures/lib/scale.js' } },
);

describe('require() in the sandbox', () => {
  it('loads a declared module, and its relative dependency through that module\'s own require', async () => {
    const outcomes = await run(newPool(), makeJob("(x) => progress(1) && require('./refiner').refine(x)", refiner), [1, 2, 3]);
    expect(valuesOf(outcomes)).toEqual([3, 5, 7]);
  });

  it('lets a work string require at its top level, before it evaluates to the function', async () => {
    const work = "const { refine } = require('./refiner'); (x) => progress(1) && refine(x)";
    expect(valuesOf(await run(newPool(), makeJob(work, refiner), [10]))).toEqual([21]);
  });

  it('throws MODULE_NOT_FOUND for an undeclared module, naming what was declared', async () => {
    const [outcome] = await run(newPool(), makeJob("() => { progress(1); return require('./other'); }", refiner), [null]);
    const error = errorOf(outcome);
    expect(error.code).toBe('EWORKFUNCTION');
    expect(error.message).toMatch(/Cannot find module '\.\/other'.*job\.requires\(\): '\.\/refiner'/);
  });

  it('gives the work function only declared names: a bundled dependency is not reachable from it directly', async () => {
    const [outcome] = await run(newPool(), makeJob("() => require('./lib/scale')", refiner), [null]);
    expect(errorOf(outcome).message).toMatch(/Cannot find module '\.\/lib\/scale'/);
  });

  it('has no Node built-ins: fs, node:fs, child_process, http all throw MODULE_NOT_FOUND', async () => {
    const work = `() => ['fs', 'node:fs', 'child_process', 'http', 'net'].map((name) => {
      try { require(name); return 'loaded ' + name; } catch (error) { return error.code; }
    })`;
    const expected = ['MODULE_NOT_FOUND', 'MODULE_NOT_FOUND', 'MODULE_NOT_FOUND', 'MODULE_NOT_FOUND', 'MODULE_NOT_FOUND'];
    const pool = newPool();
    expect(valuesOf(await run(pool, makeJob(work), [null]))).toEqual([expected]);
    expect(valuesOf(await run(pool, makeJob(work, refiner), [null]))).toEqual([expected]);
  });

  it('says so when the job declared no modules at all', async () => {
    const [outcome] = await run(newPool(), makeJob("() => require('lodash')"), [null]);
    expect(errorOf(outcome).message).toMatch(/this job declared no modules/);
  });

  it('exposes no process, Buffer or Node require through module scope either', async () => {
    const modules = modulesOf({ spy: 'spy.js' }, { 'spy.js': 'module.exports = [typeof process, typeof Buffer, typeof require, typeof module, typeof exports, __filename, __dirname, typeof setTimeout];' });
    expect(valuesOf(await run(newPool(), makeJob("() => require('spy')", modules), [null]))).toEqual([
      ['undefined', 'undefined', 'function', 'object', 'object', 'spy.js', '', 'undefined'],
    ]);
  });

  it('evaluates a module once per sandbox and job: later slices and requires get the cached exports', async () => {
    const modules = modulesOf({ counter: 'counter.js' }, { 'counter.js': 'globalThis.loads = (globalThis.loads || 0) + 1; module.exports = { n: 0 };' });
    const work = "() => { const a = require('counter'); const b = require('counter'); a.n++; return [a === b, a.n, globalThis.loads]; }";
    const values = valuesOf(await run(newPool(1), makeJob(work, modules), [0, 1, 2])) as Array<[boolean, number, number]>;
    expect(values).toEqual([[true, 1, 1], [true, 2, 1], [true, 3, 1]]);
  });

  it('does not share module instances between jobs in the same sandbox', async () => {
    const modules = modulesOf({ counter: 'counter.js' }, { 'counter.js': 'module.exports = { n: 0 };' });
    const work = "() => ++require('counter').n";
    const pool = newPool(1);
    expect(valuesOf(await run(pool, makeJob(work, modules), [0, 1]))).toEqual([1, 2]);
    expect(valuesOf(await run(pool, makeJob(work, modules), [0, 1]))).toEqual([1, 2]);
  });

  it('follows CommonJS: module.exports replaces exports, exports.x adds to it, `this` is exports', async () => {
    const modules = modulesOf(
      { replaced: 'replaced.js', added: 'added.js', reassigned: 'reassigned.js', self: 'self.js' },
      {
        'replaced.js': 'module.exports = function double(x) { return x * 2; };',
        'added.js': 'exports.a = 1; exports.b = 2;',
        'reassigned.js': 'exports = { lost: true }; module.exports.kept = true;',
        'self.js': 'this.viaThis = true;',
      },
    );
    const work = "() => [require('replaced')(4), require('added'), require('reassigned'), require('self')]";
    expect(valuesOf(await run(newPool(), makeJob(work, modules), [null]))).toEqual([[8, { a: 1, b: 2 }, { kept: true }, { viaThis: true }]]);
  });

  it('resolves relative requires between modules by path too (extensions, index.js, ..), and gives cycles the partial exports', async () => {
    const modules = modulesOf(
      { './a': 'src/a.js' },
      {
        'src/a.js': "exports.early = 'a'; const b = require('./b'); const name = 'u' + 'til'; exports.value = b.value + require('../lib/' + name).x + require('./data.json').y;",
        'src/b.js': "const a = require('./a'); exports.value = 'b(' + a.early + ')';",
        'lib/util/index.js': 'exports.x = 1;',
        'src/data.json': 'module.exports = { y: 2 };',
      },
      { 'src/a.js': { './b': 'src/b.js' }, 'src/b.js': { './a': 'src/a.js' } },
    );
    expect(valuesOf(await run(newPool(), makeJob("() => require('./a').value", modules), [null]))).toEqual(['b(a)12']);
  });

  it('lets a failed module load be retried (it is not cached half-done)', async () => {
    const modules = modulesOf({ flaky: 'flaky.js' }, { 'flaky.js': "globalThis.tries = (globalThis.tries || 0) + 1; if (globalThis.tries === 1) throw new Error('first load fails'); module.exports = globalThis.tries;" });
    const work = "() => { try { return require('flaky'); } catch (error) { return error.message; } }";
    expect(valuesOf(await run(newPool(1), makeJob(work, modules), [0, 1, 2]))).toEqual(['first load fails', 2, 2]);
  });

  it('fails every slice with the module\'s name when a module does not compile', async () => {
    const modules = modulesOf({ broken: 'broken.js' }, { 'broken.js': 'module.exports = {' });
    const outcomes = await run(newPool(), makeJob("() => require('broken')", modules), [0, 1]);
    expect(outcomes.map((outcome) => errorOf(outcome).message)).toEqual([expect.stringMatching(/^module broken\.js: /), expect.stringMatching(/^module broken\.js: /)]);
  });
});
