#!/usr/bin/env node
// Compiles contracts/*.sol with the npm `solc` package (offline, ~0.5 s) into
// dist/artifacts/<Contract>.json (or `--out <dir>`): { contractName, abi, bytecode, deployedBytecode, compiler }.
// evmVersion "shanghai": ganache 7.9 does not know later opcodes (deployment would fail with
// "missing revert data").
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const contractsDir = join(root, 'contracts');
const outFlag = process.argv.indexOf('--out');
const outDir = outFlag > 0 ? process.argv[outFlag + 1] : join(root, 'dist/artifacts');

const sources = {};
for (const file of readdirSync(contractsDir).filter((name) => name.endsWith('.sol')).sort()) {
  sources[file] = { content: readFileSync(join(contractsDir, file), 'utf8') };
}
const input = {
  language: 'Solidity',
  sources,
  settings: {
    evmVersion: 'shanghai',
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const problems = output.errors ?? [];
for (const problem of problems) console.error(problem.formattedMessage ?? problem.message);
if (problems.some((problem) => problem.severity === 'error')) {
  console.error('contract compilation failed');
  process.exit(1);
}
mkdirSync(outDir, { recursive: true });
const written = [];
for (const [file, contracts] of Object.entries(output.contracts ?? {})) {
  for (const [contractName, contract] of Object.entries(contracts)) {
    const bytecode = contract.evm.bytecode.object;
    if (!bytecode) continue; // interfaces
    const artifact = {
      contractName,
      sourceName: `contracts/${file}`,
      compiler: { version: solc.version(), evmVersion: input.settings.evmVersion, optimizer: input.settings.optimizer },
      abi: contract.abi,
      bytecode: `0x${bytecode}`,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    };
    writeFileSync(join(outDir, `${contractName}.json`), JSON.stringify(artifact, null, 2) + '\n');
    written.push(contractName);
  }
}
console.log(`compiled ${written.join(', ')} with solc ${solc.version()} -> ${outDir}`);
