#!/usr/bin/env node
// Runs jest with native ES modules (NestJS 12 and Prisma 7 are ESM-only).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const jestBin = require.resolve('jest').replace(/build[\/]index.js$/, 'bin/jest.js');
const result = spawnSync(process.execPath, ['--experimental-vm-modules', '--no-warnings=ExperimentalWarning', jestBin, ...process.argv.slice(2)], {
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
