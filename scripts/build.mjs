#!/usr/bin/env node
// Builds every package to JS that plain `node` runs: Prisma clients first (generated, not
// committed), then all TypeScript projects in dependency order with `tsc -b`.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const env = { ...process.env };
// `prisma generate` needs the schema engine variable to name something that exists; where the
// engine cannot be downloaded, the WASM stand-in in scripts/ serves (see NOTES in README).
env.PRISMA_SCHEMA_ENGINE_BINARY ??= join(root, 'scripts/prisma-schema-engine.mjs');

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, env, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`build failed: ${command} ${args.join(' ')}`);
    process.exit(result.status ?? 1);
  }
}

const bin = (name) => join(root, 'node_modules/.bin', name);
for (const service of ['scheduler', 'bank']) {
  if (existsSync(join(root, `prisma/${service}/prisma.config.mjs`))) run(bin('prisma'), ['generate', '--config', `prisma/${service}/prisma.config.mjs`]);
}
// Solidity sources of the DCC token and the bridge vault, compiled offline with solcjs (libs/chain).
run(process.execPath, ['libs/chain/scripts/compile.mjs']);
run(bin('tsc'), ['-b', 'tsconfig.build.json']);
for (const file of ['apps/worker/dist/cli.js', 'apps/scheduler/dist/main.js']) {
  if (existsSync(join(root, file))) chmodSync(join(root, file), 0o755);
}
console.log('build ok');
