#!/usr/bin/env node
// `pnpm start`: a working private Distributed Computer on this machine:
//   a local Ethereum chain (ganache) with the DCC token and the bridge vault,
//   the bank (port 4100) watching the vault, the scheduler (port 4000, BANK_URL set),
//   two workers with earnings accounts, and ~/.commune/default.keystore funded with DCC through a
//   real bridge deposit, so the example runs as a paid job. Ctrl-C stops everything.
// Migrations are applied by each service at boot. Set COMMUNE_NO_BANK=1 for free jobs only.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsonRpcProvider, Wallet, formatUnits, parseUnits } from 'ethers';
import { createSupervisor } from './supervisor.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const home = process.env.COMMUNE_HOME ?? join(homedir(), '.commune');
const schedulerPort = Number(process.env.PORT ?? 4000);
const bankPort = Number(process.env.BANK_PORT ?? 4100);
const chainPort = Number(process.env.CHAIN_PORT ?? 8545);
const schedulerUrl = `http://127.0.0.1:${schedulerPort}`;
const bankUrl = `http://127.0.0.1:${bankPort}`;
const withBank = !process.env.COMMUNE_NO_BANK;
const workerCount = Number(process.env.COMMUNE_WORKERS ?? 2);
const sandboxesPerWorker = Number(process.env.COMMUNE_SANDBOXES ?? Math.max(1, Math.floor(availableParallelism() / workerCount)));
/** DCC the dev setup deposits for the default keystore. */
const devFundsDcc = process.env.COMMUNE_DEV_FUNDS ?? '1000';
/**
 * Every child is supervised: one that exits is restarted with backoff (1 s, doubling to 30 s)
 * while the rest of the computer keeps running: workers reconnect to a restarted scheduler, the
 * scheduler settles payments with a restarted bank, the bank's bridge reconnects to a restarted
 * chain. Ctrl-C stops them all.
 */
const supervisor = createSupervisor({ cwd: root });
const run = (label, args, env = {}) => supervisor.run(label, args, env);
let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  supervisor.stop().then(() => process.exit(code));
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

/**
 * The secret the scheduler and the bank share (the bank's service endpoints answer nothing
 * else). Made once per machine with 32 random bytes and kept in ~/.commune/service-token (0600).
 */
function serviceToken() {
  if (process.env.BANK_SERVICE_TOKEN) {
    if (process.env.BANK_SERVICE_TOKEN.length < 32) throw new Error('BANK_SERVICE_TOKEN must be at least 32 characters (e.g. openssl rand -hex 32), or unset so that pnpm start makes one');
    return process.env.BANK_SERVICE_TOKEN;
  }
  const file = join(home, 'service-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const token = randomBytes(32).toString('hex');
  writeFileSync(file, token + '\n', { mode: 0o600 });
  return token;
}

async function waitFor(what, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Earnings accounts of the local workers (keys kept so their DCC can be moved or withdrawn). */
function workerAccounts() {
  const file = join(home, 'workers.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const accounts = Array.from({ length: workerCount }, () => {
    const wallet = Wallet.createRandom();
    return { address: wallet.address, privateKey: wallet.privateKey };
  });
  writeFileSync(file, JSON.stringify(accounts, null, 2) + '\n', { mode: 0o600 });
  return accounts;
}

/** A real bridge deposit: the default keystore approves the vault and deposits DCC it holds on chain. */
async function fundDefaultKeystore(wallet, chain) {
  const balance = async () => BigInt((await (await fetch(`${bankUrl}/accounts/${await wallet.getAddress()}`)).json()).balance ?? 0);
  if ((await balance()) > 0n) return false;
  const { attachContracts } = await import('@commune/chain');
  const provider = new JsonRpcProvider(chain.rpcUrl, undefined, { staticNetwork: true });
  const signer = (await wallet.load('default')).connect(provider);
  const { token, vault } = attachContracts({ token: chain.token, vault: chain.vault }, signer);
  const amount = parseUnits(devFundsDcc, 18);
  await (await token.approve(chain.vault, amount)).wait();
  await (await vault.deposit(amount, await wallet.getAddress())).wait();
  for (let i = 0; i < 4; i++) await provider.send('evm_mine', []); // confirmations on an otherwise idle dev chain
  await waitFor('the bank to credit the deposit', async () => (await balance()) > 0n, 60_000);
  provider.destroy();
  return true;
}

try {
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const { init } = await import('@commune/client');
  const { wallet } = await init({ scheduler: schedulerUrl, home });
  const address = await wallet.getAddress(); // creates ~/.commune/default.keystore on first use
  const accounts = workerAccounts();

  let chain = null;
  const token = withBank ? serviceToken() : null;
  if (withBank) {
    const chainFile = join(home, 'chain.json');
    rmSync(chainFile, { force: true });
    // The dev chain keeps its blocks in ~/.commune/chain: started again (by this supervisor, or
    // by the next pnpm start) it goes on with the same contracts and balances, which the bank's
    // ledger and bridge remember.
    run('chain', ['libs/chain/dist/local-chain.js', '--port', String(chainPort), '--out', chainFile, '--fund', address, '--data-dir', join(home, 'chain')]);
    await waitFor('the local chain', async () => existsSync(chainFile), 60_000);
    chain = JSON.parse(readFileSync(chainFile, 'utf8'));
    run('bank', ['apps/bank/dist/main.js'], {
      PORT: String(bankPort), HOST: '127.0.0.1', DATABASE_SCHEMA: 'bank', REDIS_PREFIX: 'commune_bank', BANK_SERVICE_TOKEN: token,
      BRIDGE_CONFIG_FILE: chainFile, BRIDGE_CONFIRMATIONS: '2', BRIDGE_POLL_INTERVAL_MS: '500',
      // Our own dev chain: should it ever start afresh, the bank resets its bridge state once instead of stopping.
      BRIDGE_DEV_CHAIN: '1',
    });
    await waitFor(`the bank to answer ${bankUrl}/health`, async () => (await fetch(`${bankUrl}/health`)).ok, 60_000);
  }
  run('scheduler', ['--max-old-space-size=1536', 'apps/scheduler/dist/main.js'], {
    PORT: String(schedulerPort), HOST: process.env.HOST ?? '127.0.0.1', ...(withBank ? { BANK_URL: bankUrl, BANK_SERVICE_TOKEN: token } : {}),
  });
  await waitFor(`the scheduler to answer ${schedulerUrl}/health (is PostgreSQL at DATABASE_URL and Redis at REDIS_URL reachable?)`, async () => (await fetch(`${schedulerUrl}/health`)).ok, 60_000);
  for (let i = 0; i < workerCount; i++) {
    run(`worker-${i + 1}`, [
      'apps/worker/dist/cli.js', '--scheduler', schedulerUrl, '--sandboxes', String(sandboxesPerWorker),
      '--earnings', accounts[i].address, ...(withBank ? ['--bank', bankUrl] : []),
    ]);
  }
  await waitFor(`${workerCount} workers to connect`, async () => (await (await fetch(`${schedulerUrl}/metrics`)).text()).includes(`commune_workers_connected ${workerCount}`), 30_000);
  const funded = withBank ? await fundDefaultKeystore(wallet, chain) : false;
  const balance = withBank ? (await (await fetch(`${bankUrl}/accounts/${address}`)).json()).balance : null;
  console.log(`
  Commune is running: a private Distributed Computer.
    scheduler   ${schedulerUrl}  (/health, /metrics, /jobs/:id, /jobs/:id/results)${withBank ? `
    bank        ${bankUrl}  (/docs, /accounts/:address)
    chain       ${chain.rpcUrl}  (DCC token ${chain.token}, vault ${chain.vault})` : ''}
    workers     ${workerCount} connected, ${sandboxesPerWorker} sandbox(es) each, earnings in ~/.commune/workers.json
    keystore    ~/.commune/default.keystore (${address})${withBank ? `
    balance     ${formatUnits(BigInt(balance), 18).replace(/\.0$/, '')} DCC${funded ? ` (deposited ${devFundsDcc} DCC through the bridge)` : ''}` : ''}

  Try it, in another terminal:
    node examples/hello.mjs

  Ctrl-C stops everything.
`);
} catch (error) {
  console.error(`start failed: ${error.message}`);
  stop(1);
}
