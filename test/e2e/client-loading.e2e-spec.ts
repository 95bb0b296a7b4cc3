import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../support/processes.js';

/** The SDK loads from a program outside the workspace that requires it by path, as CJS and ESM. */
describe('@commune/client from outside the workspace', () => {
  const dir = mkdtempSync(join(tmpdir(), 'commune-outside-'));
  const clientPath = join(repoRoot, 'libs/client');

  it('loads with require()', () => {
    writeFileSync(join(dir, 'program.cjs'), `const sdk = require(${JSON.stringify(clientPath)});\nconsole.log(typeof sdk.init, typeof sdk.CommuneError);\n`);
    const run = spawnSync(process.execPath, [join(dir, 'program.cjs')], { cwd: dir, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('function function');
  });

  it('loads with import', () => {
    writeFileSync(join(dir, 'program.mjs'), `import { init, CommuneError } from ${JSON.stringify(join(clientPath, 'dist/index.js'))};\nconst sdk = await import(${JSON.stringify(clientPath + '/dist/index.js')});\nconsole.log(typeof init, typeof CommuneError, sdk.init === init);\n`);
    const run = spawnSync(process.execPath, [join(dir, 'program.mjs')], { cwd: dir, encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('function function true');
  });
});
