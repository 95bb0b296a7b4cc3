#!/usr/bin/env node
/**
 * A dev chain for the bank's bridge: `node libs/chain/dist/local-chain.js --port 8545 --out chain.json`
 * starts ganache, deploys DCCToken and BridgeVault with account 0 as owner and bank operator,
 * mints a dev supply to account 0 and to every `--fund 0x..` address (which also get ether for
 * gas), writes {rpcUrl, chainId, token, vault, operatorKey, startBlock} to `--out` (or stdout)
 * and stays up until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { Wallet, getAddress, isAddress, parseEther, parseUnits } from 'ethers';
import { writeBridgeConfig, type BridgeChainConfig } from './bridge-config.js';
import { connectProvider } from './provider.js';
import { deployContracts } from './contracts.js';
import { startLocalChain } from './start-local-chain.js';

const usage = `usage: local-chain [--port 8545] [--host 127.0.0.1] [--out file.json] [--fund 0xADDRESS]...
                   [--supply 1000000] [--vault-supply 0] [--ether-per-fund 10]
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

  const chain = await startLocalChain({ port, host: values.host });
  const provider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 50 });
  const operator = new Wallet(chain.accounts[0], provider);
  const { token, vault, addresses, deployBlock } = await deployContracts(operator);
  // Sequential sends: the wallet takes each nonce from the node's pending count.
  for (const to of [operator.address, ...funded]) await (await token.mint(to, supply)).wait();
  if (vaultSupply > 0n) await (await token.mint(addresses.vault, vaultSupply)).wait();
  for (const to of funded) if (etherPerFund > 0n) await (await operator.sendTransaction({ to, value: etherPerFund })).wait();

  const config: BridgeChainConfig = {
    rpcUrl: chain.url,
    chainId: chain.chainId,
    token: addresses.token,
    vault: addresses.vault,
    operatorKey: chain.accounts[0],
    startBlock: deployBlock,
  };
  if (values.out) writeBridgeConfig(values.out, config);
  else console.log(JSON.stringify(config, null, 2));
  console.error(
    `local chain ${chain.url} (chain id ${chain.chainId}): DCCToken ${addresses.token}, BridgeVault ${await vault.getAddress()}, ` +
      `operator ${operator.address}${values.out ? `; config written to ${values.out}` : ''}`,
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
