#!/usr/bin/env node
/**
 * A dev chain for the bank's bridge: `node libs/chain/dist/local-chain.js --port 8545 --out chain.json`
 * starts ganache, deploys DCCToken and BridgeVault with account 0 as owner and bank operator,
 * mints a dev supply to account 0 and to every `--fund 0x..` address (which also get ether for
 * gas), writes {rpcUrl, chainId, token, vault, operatorKey, startBlock} to `--out` (or stdout)
 * and stays up until SIGINT/SIGTERM.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Wallet, getAddress, isAddress, parseEther, parseUnits } from 'ethers';
import { writeBridgeConfig, type BridgeChainConfig } from './bridge-config.js';
import { connectProvider } from './provider.js';
import { attachContracts, deployContracts } from './contracts.js';
import { startLocalChain } from './start-local-chain.js';

const usage = `usage: local-chain [--port 8545] [--host 127.0.0.1] [--out file.json] [--fund 0xADDRESS]...
                   [--supply 1000000] [--vault-supply 0] [--ether-per-fund 10] [--data-dir DIR]
  --data-dir      keep the chain's blocks and state in DIR: started again on it, the chain goes on
                  where it stopped with the same contracts and balances (nothing is deployed or
                  minted again, except for --fund addresses that hold nothing yet)
  --supply        DCC (whole tokens) minted to account 0 and to each --fund address
  --vault-supply  DCC minted straight into the vault, so withdrawals of balances that were never
                  deposited (dev faucets) can be paid`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8545' },
      host: { type: 'string', default: '127.0.0.1' },
      out: { type: 'string' },
      fund: { type: 'string', multiple: true, default: [] },
      supply: { type: 'string', default: '1000000' },
      'vault-supply': { type: 'string', default: '0' },
      'ether-per-fund': { type: 'string', default: '10' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port ${values.port} is not a port\n${usage}`);
  const funded = values.fund.map((address) => {
    if (!isAddress(address)) throw new Error(`--fund ${address} is not an Ethereum address`);
    return getAddress(address);
  });
  const supply = parseUnits(values.supply, 18);
  const vaultSupply = parseUnits(values['vault-supply'], 18);
  const etherPerFund = parseEther(values['ether-per-fund']);

  // The config file exists only once this chain is ready: a stale one from an earlier run must not
  // tell a waiting bank (or a compose healthcheck) that it is.
  if (values.out) rmSync(values.out, { force: true });
  const dataDir = values['data-dir'];
  if (dataDir) mkdirSync(join(dataDir, 'db'), { recursive: true, mode: 0o700 });
  const chain = await startLocalChain({ port, host: values.host, ...(dataDir ? { dbPath: join(dataDir, 'db') } : {}) });
  const provider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 50 });
  const operator = new Wallet(chain.accounts[0], provider);
  // A chain started again on its data dir already has its contracts: the config saved beside
  // its blocks names them, and the token's code at that address proves it is the same chain.
  const savedFile = dataDir ? join(dataDir, 'bridge-chain.json') : null;
  const saved = savedFile && existsSync(savedFile) ? (JSON.parse(readFileSync(savedFile, 'utf8')) as BridgeChainConfig) : null;
  const reused = saved !== null && saved.chainId === chain.chainId && (await provider.getCode(saved.token)) !== '0x';
  let config: BridgeChainConfig;
  if (reused) {
    config = { ...saved, rpcUrl: chain.url };
    const { token } = attachContracts({ token: config.token, vault: config.vault }, operator);
    // Only addresses that hold nothing yet are funded: a restart mints nothing twice.
    for (const to of funded) {
      if ((await token.balanceOf(to)) > 0n) continue;
      await (await token.mint(to, supply)).wait();
      if (etherPerFund > 0n && (await provider.getBalance(to)) === 0n) await (await operator.sendTransaction({ to, value: etherPerFund })).wait();
    }
  } else {
    const { token, vault, addresses, deployBlock } = await deployContracts(operator);
    // Sequential sends: the wallet takes each nonce from the node's pending count.
    for (const to of [operator.address, ...funded]) await (await token.mint(to, supply)).wait();
    if (vaultSupply > 0n) await (await token.mint(addresses.vault, vaultSupply)).wait();
    for (const to of funded) if (etherPerFund > 0n) await (await operator.sendTransaction({ to, value: etherPerFund })).wait();
    config = {
      rpcUrl: chain.url,
      chainId: chain.chainId,
      token: addresses.token,
      vault: await vault.getAddress(),
      operatorKey: chain.accounts[0],
      startBlock: deployBlock,
    };
  }
  if (savedFile) writeBridgeConfig(savedFile, config);
  if (values.out) writeBridgeConfig(values.out, config);
  else console.log(JSON.stringify(config, null, 2));
  console.error(
    `local chain ${chain.url} (chain id ${chain.chainId}${reused ? `, resumed from ${dataDir} at block ${await provider.getBlockNumber()}` : ''}): ` +
      `DCCToken ${config.token}, BridgeVault ${config.vault}, operator ${operator.address}${values.out ? `; config written to ${values.out}` : ''}`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`local chain: ${signal}, stopping`);
    provider.destroy();
    await chain.stop();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  console.error(`local chain failed: ${(error as Error).message}`);
  process.exit(1);
});
