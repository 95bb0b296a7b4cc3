import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ErrorCode, Limits } from '@commune/protocol';
import { createCompute } from './compute.js';
import { bundleModules, callerDirectory } from './modules.js';
import { contextFor, FakeLink, waitFor } from './test-support.js';

/* eslint-disable no-var */
declare var progress: (n?: number | string) => boolean;
declare var require: (name: string) => { refine(x: number): number };
/* eslint-enable no-var */

/** A folder of files: {relative path: content}. */
function folder(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'commune-modules-'));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

const codeMatching = (code: string) => expect.objectContaining({ code });

const project = () =>
  folder({
    'fixtures/refiner.js': "const { scale } = require('./lib/scale'); const { offset } = require('./data.json'); exports.refine = (x) => scale(x) + offset;",
    'fixtures/lib/scale.js': 'export function scale(x) { return x * 2; }',
    'fixtures/data.json': '{ "offset": 1 }',
    'fixtures/broken.js': "require('./not-there');",
    'fixtures/uses-fs.js': "exports.read = () => require('fs').readFileSync('/etc/passwd');",
    'node_modules/tiny-pkg/package.json': '{ "name": "tiny-pkg", "main": "main.js" }',
    'node_modules/tiny-pkg/main.js': "module.exports = { twice: require('./twice') };",
    'node_modules/tiny-pkg/twice.js': 'module.exports = (x) => 2 * x;',
    'vendor/local-pkg/index.js': 'exports.name = "local";',
  });

describe(bundleModules.name, () => {
  it('bundles a private module with its relative dependencies (CommonJS, ES module, JSON) as separate CommonJS files', async () => {
    const root = project();
    const modules = await bundleModules([{ specifier: './fixtures/refiner', directory: root }]);
    expect(modules!.files.map((file) => file.id)).toEqual(['data.json', 'lib/scale.js', 'refiner.js']);
    // The work function knows it by the declared name and by its file name.
    expect(modules!.main).toEqual({ './fixtures/refiner': 'refiner.js', './refiner': 'refiner.js', './refiner.js': 'refiner.js' });
    const refiner = modules!.files.find((file) => file.id === 'refiner.js')!;
    expect(refiner.requires).toEqual({ './lib/scale': 'lib/scale.js', './data.json': 'data.json' });
    expect(refiner.source).toContain("require('./lib/scale')"); // CommonJS travels as written
    const scale = modules!.files.find((file) => file.id === 'lib/scale.js')!;
    expect(scale.source).not.toMatch(/^export /m); // the ES module became CommonJS
    expect(modules!.files.find((file) => file.id === 'data.json')!.source).toBe('module.exports = {"offset":1};');
  });

  it('bundles a package from node_modules with its own files, known by its bare name', async () => {
    const root = project();
    const modules = await bundleModules([{ specifier: 'tiny-pkg', directory: join(root, 'fixtures') }]);
    expect(modules!.main).toEqual({ 'tiny-pkg': 'main.js' });
    expect(modules!.files.map((file) => [file.id, file.requires])).toEqual([['main.js', { './twice': 'twice.js' }], ['twice.js', {}]]);
  });

  it('searches requirePath / modulePath directories for packages, relative to moduleRoot', async () => {
    const root = project();
    await expect(bundleModules([{ specifier: 'local-pkg', directory: root }])).rejects.toEqual(codeMatching(ErrorCode.ENOTFOUND));
    const modules = await bundleModules([{ specifier: 'local-pkg', directory: '/nowhere' }], { moduleRoot: root, searchPaths: ['vendor'] });
    expect(modules!.main).toEqual({ 'local-pkg': 'index.js' });
  });

  it('gives a clear ENOTFOUND for a module that does not exist, and for a missing dependency, naming the file', async () => {
    const root = project();
    const missing = bundleModules([{ specifier: './fixtures/nope', directory: root }]);
    await expect(missing).rejects.toEqual(codeMatching(ErrorCode.ENOTFOUND));
    await expect(missing).rejects.toThrow(`job.requires('./fixtures/nope'): cannot find the module './fixtures/nope' from ${root}`);
    await expect(bundleModules([{ specifier: 'no-such-package', directory: root }])).rejects.toThrow(/cannot find the package 'no-such-package'/);
    await expect(bundleModules([{ specifier: './fixtures/broken', directory: root }])).rejects.toThrow(/fixtures\/broken\.js:1: Could not resolve "\.\/not-there"/);
  });

  it('refuses Node built-ins as job modules (EINVAL) and leaves a module\'s own require of one to fail in the sandbox', async () => {
    const root = project();
    await expect(bundleModules([{ specifier: 'fs', directory: root }])).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(bundleModules([{ specifier: 'node:child_process', directory: root }])).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    const modules = await bundleModules([{ specifier: './fixtures/uses-fs', directory: root }]);
    expect(modules!.files).toEqual([expect.objectContaining({ id: 'uses-fs.js', requires: {} })]);
  });

  it('refuses two modules that the sandbox would know by the same file name (EINVAL)', async () => {
    const root = folder({ 'a/util.js': 'exports.a = 1;', 'b/util.js': 'exports.b = 1;' });
    await expect(bundleModules([{ specifier: './a/util', directory: root }, { specifier: './b/util', directory: root }])).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });

  it('finds the directory of the code that calls a function', () => {
    const probe = () => callerDirectory(probe);
    expect(probe()).toBe(dirname(new URL(import.meta.url).pathname));
  });
});

describe('job.requires()', () => {
  function setup() {
    const link = new FakeLink();
    return { link, compute: createCompute(contextFor(link)) };
  }

  it('resolves names relative to the calling file, or to job.moduleRoot, and runs them in localExec()', async () => {
    const root = project();
    const { compute } = setup();
    const job = compute.for(1, 3, (x: number) => progress(1) && require('./refiner').refine(x));
    job.requires('./fixtures/refiner');
    await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.ENOTFOUND)); // not next to this spec file
    job.moduleRoot = root;
    expect(Array.from(await job.localExec())).toEqual([3, 5, 7]);
    expect(job.requiredModules).toEqual(['./fixtures/refiner']);
  });

  it('sends the modules with the signed deploy', async () => {
    const { compute, link } = setup();
    const job = compute.for([1], (x: number) => x);
    job.moduleRoot = project();
    job.requires(['./fixtures/refiner', 'tiny-pkg']);
    void job.exec().catch(() => undefined);
    await waitFor('the deploy', () => link.deploys.length === 1);
    const spec = link.deploys[0]!.job;
    expect(spec.modules!.main).toMatchObject({ './refiner': 'fixtures/refiner.js', 'tiny-pkg': 'node_modules/tiny-pkg/main.js' });
    expect(spec.modules!.files).toHaveLength(5);
  });

  it('checks work + modules against maxWorkBytes before sending (EWORKTOOBIG)', async () => {
    const { compute, link } = setup();
    const root = folder({ 'big.js': `module.exports = ${JSON.stringify('x'.repeat(Limits.maxWorkBytes))};` });
    const job = compute.for([1], (x: number) => x);
    job.moduleRoot = root;
    job.requires('./big');
    await expect(job.exec()).rejects.toEqual(codeMatching(ErrorCode.EWORKTOOBIG));
    await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.EWORKTOOBIG));
    expect(link.deploys).toEqual([]);
  });

  it('takes names only before the job is deployed (EPERM after) and only strings (EINVAL)', async () => {
    const { compute } = setup();
    const job = compute.for([1], (x: number) => x);
    expect(() => job.requires(42 as never)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => job.requires([''])).toThrow(codeMatching(ErrorCode.EINVAL));
    void job.exec().catch(() => undefined); // deploying from here on
    expect(() => job.requires('./late')).toThrow(codeMatching(ErrorCode.EPERM));
  });
});
