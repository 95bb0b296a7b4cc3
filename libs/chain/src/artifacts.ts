import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { InterfaceAbi } from 'ethers';

/** What scripts/compile.mjs writes to dist/artifacts/<contractName>.json. */
export interface ContractArtifact {
  contractName: string;
  sourceName: string;
  compiler: { version: string; evmVersion: string; optimizer: { enabled: boolean; runs: number } };
  abi: InterfaceAbi;
  bytecode: string;
  deployedBytecode: string;
}

export type ContractName = 'DCCToken' | 'BridgeVault';

/**
 * dist/artifacts, found from dist/*.js (built) and from src/*.ts (unit tests) alike: both sit one
 * level below the package root.
 */
export const artifactsDir = fileURLToPath(new URL('../dist/artifacts/', import.meta.url));

const cache = new Map<ContractName, ContractArtifact>();

/** The compiled ABI and bytecode of a contract (the build step `node scripts/compile.mjs` makes them). */
export function loadArtifact(name: ContractName): ContractArtifact {
  const cached = cache.get(name);
  if (cached) return cached;
  const file = `${artifactsDir}${name}.json`;
  if (!existsSync(file)) {
    throw new Error(`contract artifact ${file} is missing: build it with \`node libs/chain/scripts/compile.mjs\` (pnpm build does)`);
  }
  const artifact = JSON.parse(readFileSync(file, 'utf8')) as ContractArtifact;
  cache.set(name, artifact);
  return artifact;
}
