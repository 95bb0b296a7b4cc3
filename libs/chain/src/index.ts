/**
 * @commune/chain: the DCC token and bridge vault (contracts/*.sol, compiled by scripts/compile.mjs
 * into dist/artifacts), typed ethers helpers to deploy, attach and read them, and a local ganache
 * chain for development and tests.
 */
export * from './artifacts.js';
export * from './contracts.js';
export * from './provider.js';
export * from './bridge-config.js';
export * from './start-local-chain.js';
