import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ContractFactory, MaxUint256, formatUnits, Transaction, Wallet, parseUnits, type JsonRpcProvider, type TransactionReceipt, type TransactionResponse } from 'ethers';
import pg from 'pg';
import {
  attachContracts,
  attachVault,
  connectProvider,
  loadArtifact,
  queryDeposits,
  queryWithdrawals,
  startLocalChain,
  writeBridgeConfig,
  type BridgeContracts,
  type LocalChain,
} from '@commune/chain';
import { SignedKind, signRequest, type Withdrawal, type WithdrawalRequest } from '@commune/protocol';
import { freePort, repoRoot } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment, waitFor, within } from '../support/services.js';

const CONFIRMATIONS = 3;
const TOKEN = 'chaos-bridge-suite-service-token-0123456789abcdef';
const DEPOSIT_GAS = 150_000n;
const dcc = (whole: number | string) => parseUnits(String(whole), 18);
const gwei = (whole: number) => parseUnits(String(whole), 9);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (message: string) => console.log(`[chaos/bridge] ${message}`);

/** A ganache chain of the test's own with the token and vault deployed, five funded depositors that approved the vault, and the bank's config file. */
interface Rig {
  chain: LocalChain;
  provider: JsonRpcProvider;
  operator: Wallet;
  depositors: Wallet[];
  contracts: BridgeContracts;
  deployBlock: number;
  configFile: string;
}

interface BankProcess {
  child: ChildProcess;
  url: string;
  output(): string;
  exited: Promise<unknown>;
  stop(): Promise<void>;
  sigkill(): Promise<void>;
}

/**
 * Issue 8, "the bank's bridge survives being killed and the chain misbehaving": the real bank
 * process (apps/bank/dist), its own PostgreSQL schema and Redis key prefix, its own ganache chain
 * (manual mining: every block is the test's doing). SIGKILL while it credits deposits and while it
 * sends withdrawals, a reorganisation deeper than the confirmations, a fresh dev chain under a
 * bank that knew the old one, and a changed chain where no dev chain was declared. Each checks the
 * ledger (every deposit credited once, the bridge account against the vault) and prints what
 * recovery took.
 */
describe('the bank bridge under SIGKILL, deep reorganisations and a replaced chain (chaos, e2e)', () => {
  /** Undone after each test, newest first, whatever happened. */
  let cleanups: Array<() => Promise<unknown>> = [];

  afterEach(async () => {
    const pending = cleanups.reverse();
    cleanups = [];
    for (const cleanup of pending) await within(cleanup(), 15_000, 'a cleanup step').catch(() => undefined);
  }, 120_000);

  // ---------------------------------------------------------------- chain

  async function startRig(options: { port?: number; dbPath?: string } = {}): Promise<Rig> {
    const chain = await startLocalChain({ port: options.port ?? 0, mining: 'manual', ...(options.dbPath ? { dbPath: options.dbPath } : {}) });
    cleanups.push(() => chain.stop());
    const provider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 20 });
    cleanups.push(async () => provider.destroy());
    const operator = new Wallet(chain.accounts[0]!, provider);
    const depositors = chain.accounts.slice(1, 6).map((key) => new Wallet(key, provider));
    const deployed = await deploy({ chain, provider }, operator);
    let operatorNonce = await provider.getTransactionCount(operator.address, 'latest');
    const setup: TransactionResponse[] = [];
    for (const depositor of depositors) setup.push(await deployed.token.mint(depositor.address, dcc(1_000_000), { gasLimit: 100_000, nonce: operatorNonce++ }));
    for (const depositor of depositors) {
      const token = attachContracts(deployed.addresses, depositor).token;
      setup.push(await token.approve(deployed.addresses.vault, MaxUint256, { gasLimit: 100_000, nonce: await provider.getTransactionCount(depositor.address, 'latest') }));
    }
    await minedAll({ chain, provider }, setup.map((transaction) => transaction.hash));
    const configDir = mkdtempSync(join(tmpdir(), 'commune-chaos-bridge-'));
    cleanups.push(async () => rmSync(configDir, { recursive: true, force: true }));
    const configFile = join(configDir, 'chain.json');
    writeBridgeConfig(configFile, {
      rpcUrl: chain.url,
      chainId: chain.chainId,
      token: deployed.addresses.token,
      vault: deployed.addresses.vault,
      operatorKey: chain.accounts[0]!,
      startBlock: deployed.deployBlock,
    });
    return { chain, provider, operator, depositors, contracts: deployed, deployBlock: deployed.deployBlock, configFile };
  }

  /**
   * The token, then the vault, one block each, as `local-chain` deploys them (instamine): on a fresh
   * chain they always land at the same addresses and blocks, so a dev chain started afresh matches
   * the config file the bank read.
   */
  async function deploy(rig: Pick<Rig, 'chain' | 'provider'>, operator: Wallet): Promise<BridgeContracts & { deployBlock: number }> {
    const created = async (name: 'DCCToken' | 'BridgeVault', args: unknown[]) => {
      const artifact = loadArtifact(name);
      const request = await new ContractFactory(artifact.abi, artifact.bytecode, operator).getDeployTransaction(...args);
      const sent = await operator.sendTransaction({ ...request, gasLimit: 6_000_000, nonce: await rig.provider.getTransactionCount(operator.address, 'latest') });
      const [receipt] = await minedAll(rig, [sent.hash]);
      return receipt!;
    };
    const token = await created('DCCToken', []);
    const vault = await created('BridgeVault', [token.contractAddress!, operator.address]);
    return { ...attachContracts({ token: token.contractAddress!, vault: vault.contractAddress! }, operator), deployBlock: vault.blockNumber };
  }

  /** Mines a block at a time until every transaction has a receipt; fails on a reverted one. */
  async function minedAll(rig: Pick<Rig, 'chain' | 'provider'>, hashes: string[]): Promise<TransactionReceipt[]> {
    const receipts = await waitFor(`${hashes.length} transaction(s) mined`, async () => {
      const found = await Promise.all(hashes.map((hash) => rig.provider.getTransactionReceipt(hash)));
      if (found.every((receipt) => receipt !== null)) return found as TransactionReceipt[];
      await rig.chain.mine(1);
      return null;
    }, 30_000, 10);
    const reverted = receipts.filter((receipt) => receipt.status !== 1);
    if (reverted.length > 0) throw new Error(`reverted: ${reverted.map((receipt) => receipt.hash).join(', ')}`);
    return receipts;
  }

  /** A deposit transaction signed offline with every field fixed: the same bytes can be broadcast again, on a reorganised or another chain. */
  async function signedDeposit(rig: Rig, depositor: Wallet, amount: bigint, ledgerAccount: string, nonce: number, priorityGwei = 1): Promise<string> {
    const call = await attachVault(rig.contracts.addresses.vault, depositor).deposit.populateTransaction(amount, ledgerAccount);
    return depositor.signTransaction({
      ...call,
      nonce,
      gasLimit: DEPOSIT_GAS,
      maxFeePerGas: gwei(100),
      maxPriorityFeePerGas: gwei(priorityGwei),
      chainId: rig.chain.chainId,
      type: 2,
    });
  }

  /**
   * The vault's Deposited event of a transaction as eth_getLogs gives it (ganache's receipts number
   * logs within the transaction; eth_getLogs, which the watcher reads, within the block).
   */
  async function depositedIn(rig: Rig, receipt: TransactionReceipt): Promise<{ depositId: bigint; logIndex: number; blockNumber: number }> {
    const events = await queryDeposits(rig.provider, rig.contracts.addresses.vault, receipt.blockNumber, receipt.blockNumber);
    const event = events.find((candidate) => candidate.transactionHash === receipt.hash);
    if (!event) throw new Error(`no Deposited event of ${receipt.hash} in block ${receipt.blockNumber}`);
    return { depositId: event.depositId, logIndex: event.logIndex, blockNumber: event.blockNumber };
  }

  // ---------------------------------------------------------------- bank

  function bankEnvironment(rig: Rig, extra: Record<string, string> = {}): Record<string, string> {
    const env = isolatedEnvironment({
      BANK_SERVICE_TOKEN: TOKEN,
      BRIDGE_CONFIG_FILE: rig.configFile,
      BRIDGE_CONFIRMATIONS: String(CONFIRMATIONS),
      BRIDGE_POLL_INTERVAL_MS: '100',
      ...extra,
    });
    cleanups.push(() => dropIsolated(env));
    return env;
  }

  /** `node apps/bank/dist/main.js` on a free port; resolves once /health answers. Killed in cleanup if still running. */
  async function startBankProcess(env: Record<string, string>): Promise<BankProcess> {
    const port = await freePort();
    const child = spawn(process.execPath, [join(repoRoot, 'apps/bank/dist/main.js')], { env: { ...process.env, ...env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.length > 400_000) output = output.slice(-200_000);
      if (process.env.TEST_SHOW_OUTPUT) process.stderr.write(`[bank:${port}] ${chunk}`);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    const exited = new Promise((resolve) => child.once('exit', resolve));
    const running = () => child.exitCode === null && child.signalCode === null;
    const bank: BankProcess = {
      child,
      url: `http://127.0.0.1:${port}`,
      output: () => output,
      exited,
      async stop() {
        if (!running()) return;
        child.kill('SIGTERM');
        await within(exited, 10_000, 'the bank to stop on SIGTERM').catch(() => child.kill('SIGKILL'));
      },
      async sigkill() {
        if (!running()) return;
        child.kill('SIGKILL');
        await within(exited, 5_000, 'the bank to die on SIGKILL');
      },
    };
    cleanups.push(async () => {
      if (running()) child.kill('SIGKILL');
      await within(exited, 5_000, 'the bank to exit').catch(() => undefined);
    });
    await waitFor('the bank process to answer /health', async () => {
      if (!running()) throw new Error(`the bank exited: ${output.slice(-4000)}`);
      return (await fetch(`${bank.url}/health`).catch(() => null))?.ok;
    }, 60_000, 100);
    return bank;
  }

  /** Lines of the bank's log (JSON, LOG_LEVEL warn) that contain `text`. */
  const linesWith = (bank: BankProcess, text: string) => bank.output().split('\n').filter((line) => line.includes(text)).length;

  async function metric(bank: BankProcess, name: string): Promise<number> {
    const text = await (await fetch(`${bank.url}/metrics`)).text();
    const line = text.split('\n').find((entry) => entry.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : 0;
  }

  async function database(env: Record<string, string>): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
    await client.connect();
    cleanups.push(() => client.end());
    return client;
  }

  async function scalar<T = string>(db: pg.Client, sql: string, params: unknown[] = []): Promise<T> {
    return Object.values((await db.query(sql, params)).rows[0] as Record<string, T>)[0]!;
  }

  async function balanceOf(bank: BankProcess, address: string): Promise<bigint> {
    const response = await fetch(`${bank.url}/accounts/${address}`);
    if (response.status !== 200) throw new Error(`GET /accounts/${address}: ${response.status} ${await response.text()}`);
    return BigInt(((await response.json()) as { balance: string }).balance);
  }

  const bridgeBalance = async (db: pg.Client) => BigInt(await scalar(db, "SELECT balance::text FROM accounts WHERE address = 'bridge'"));

  /** The ledger's own invariants, as LedgerRepository.audit checks them. */
  async function expectLedgerClean(db: pg.Client): Promise<void> {
    const audit = (
      await db.query(`SELECT
        (SELECT COALESCE(sum(balance), 0)::text FROM accounts) AS total,
        (SELECT count(*) FROM (SELECT transfer_id FROM entries GROUP BY transfer_id HAVING sum(amount) <> 0) u)::int AS unbalanced,
        (SELECT count(*) FROM accounts a LEFT JOIN (SELECT account_id, sum(amount) AS total FROM entries GROUP BY account_id) e ON e.account_id = a.id
          WHERE a.balance <> COALESCE(e.total, 0))::int AS drifted,
        (SELECT count(*) FROM holds h JOIN accounts e ON e.id = h.escrow_account_id
          WHERE (h.status = 'held' AND e.balance <> h.amount - h.posted) OR (h.status <> 'held' AND e.balance <> 0))::int AS inconsistent_holds`)
    ).rows[0];
    expect(audit).toEqual({ total: '0', unbalanced: 0, drifted: 0, inconsistent_holds: 0 });
  }

  /** Waits until the watcher has read every block that is final now. */
  async function watcherCaughtUp(rig: Rig, db: pg.Client): Promise<void> {
    const finalBlock = (await rig.chain.blockNumber()) - CONFIRMATIONS;
    await waitFor(`the deposit watcher to read up to block ${finalBlock}`, async () => {
      const cursor = (await db.query("SELECT block_number FROM bridge_cursors WHERE name LIKE 'deposits:%'")).rows[0];
      return cursor && Number(cursor.block_number) >= finalBlock;
    }, 15_000, 20);
  }

  async function waitForBalance(bank: BankProcess, address: string, amount: bigint, what: string): Promise<number> {
    return waitFor(what, async () => ((await balanceOf(bank, address)) === amount ? Date.now() : null), 45_000, 20);
  }

  /** Deposits from `depositor` (a new nonce), mines it and its confirmations, waits for the credit. */
  async function deposit(rig: Rig, bank: BankProcess, depositor: Wallet, amount: bigint, ledgerAccount: string): Promise<void> {
    const before = await balanceOf(bank, ledgerAccount);
    const sent = await attachVault(rig.contracts.addresses.vault, depositor).deposit(amount, ledgerAccount, { gasLimit: DEPOSIT_GAS });
    await minedAll(rig, [sent.hash]);
    await rig.chain.mine(CONFIRMATIONS);
    await waitForBalance(bank, ledgerAccount, before + amount, `a deposit of ${amount} to ${ledgerAccount}`);
  }

  async function requestWithdrawal(bank: BankProcess, payer: Pick<Wallet, 'address' | 'signMessage'>, to: string, amount: bigint): Promise<Withdrawal> {
    const withdrawal: WithdrawalRequest = {
      from: payer.address,
      to,
      amount: amount.toString(),
      idempotencyKey: `chaos-${Math.random().toString(36).slice(2)}`,
      expiresAt: Date.now() + 60_000,
    };
    const body = { withdrawal, signature: await signRequest(payer, SignedKind.withdrawal, withdrawal) };
    const response = await fetch(`${bank.url}/withdrawals`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (response.status !== 202) throw new Error(`POST /withdrawals: ${response.status} ${await response.text()}`);
    return (await response.json()) as Withdrawal;
  }

  async function withdrawalStates(db: pg.Client): Promise<Record<string, number>> {
    const rows = (
      await db.query(`SELECT CASE WHEN status = 'pending' AND raw_tx IS NULL THEN 'held, unsigned' WHEN status = 'pending' THEN 'signed, not sent'
        ELSE status END AS state, count(*)::int AS n FROM bridge_withdrawals GROUP BY 1 ORDER BY 1`)
    ).rows;
    return Object.fromEntries(rows.map((row) => [row.state, row.n]));
  }

  // ---------------------------------------------------------------- (a) deposits

  it('credits every deposit exactly once when the bank is SIGKILLed while it credits them', async () => {
    const DEPOSITS = 150;
    const rig = await startRig();
    const env = bankEnvironment(rig);
    let bank = await startBankProcess(env);
    const db = await database(env);

    const accounts = Array.from({ length: 30 }, () => Wallet.createRandom().address);
    const expected = new Map<string, bigint>();
    let total = 0n;
    const nonces = await Promise.all(rig.depositors.map((depositor) => rig.provider.getTransactionCount(depositor.address, 'latest')));
    const hashes: string[] = [];
    for (let i = 0; i < DEPOSITS; i++) {
      const which = i % rig.depositors.length;
      const amount = dcc(1 + (i % 7));
      const account = accounts[i % accounts.length]!;
      const raw = await signedDeposit(rig, rig.depositors[which]!, amount, account, nonces[which]!++);
      hashes.push((await rig.provider.broadcastTransaction(raw)).hash);
      expected.set(account, (expected.get(account) ?? 0n) + amount);
      total += amount;
    }
    await minedAll(rig, hashes);
    // The confirmations make all of them final at once: the watcher credits them one after another.
    await rig.chain.mine(CONFIRMATIONS);
    const credited = async () => Number(await scalar(db, 'SELECT count(*) FROM bridge_deposits WHERE transfer_id IS NOT NULL'));
    await waitFor('the watcher to be crediting the deposits', async () => (await credited()) >= DEPOSITS / 4, 30_000, 2);
    await bank.sigkill();
    const atKill = (await db.query('SELECT count(transfer_id)::int AS credited, count(*)::int AS taken FROM bridge_deposits')).rows[0] as { credited: number; taken: number };
    // The kill must land in the middle, or this test shows nothing.
    expect(atKill.credited).toBeGreaterThan(0);
    expect(atKill.credited).toBeLessThan(DEPOSITS);

    const restartedAt = Date.now();
    bank = await startBankProcess(env);
    const upAt = Date.now();
    await waitFor(`all ${DEPOSITS} deposits credited after the restart`, async () => (await credited()) === DEPOSITS, 60_000, 20);
    const recoveredAt = Date.now();
    log(
      `deposits: SIGKILL with ${atKill.credited} of ${DEPOSITS} credited (${atKill.taken - atKill.credited} more written down, their credit not recorded); ` +
        `restart -> bank up in ${upAt - restartedAt} ms, every deposit credited ${recoveredAt - restartedAt} ms after the restart`,
    );

    await watcherCaughtUp(rig, db);
    for (const [account, amount] of expected) expect(await balanceOf(bank, account)).toBe(amount);
    expect(await scalar(db, "SELECT count(*)::int FROM transfers WHERE kind = 'deposit'")).toBe(DEPOSITS);
    expect(await scalar(db, 'SELECT count(DISTINCT tx_hash)::int FROM bridge_deposits')).toBe(DEPOSITS);
    expect(await bridgeBalance(db)).toBe(-total);
    expect(await rig.contracts.token.balanceOf(rig.contracts.addresses.vault)).toBe(total);
    await expectLedgerClean(db);
  }, 240_000);

  // ---------------------------------------------------------------- (b) withdrawals

  it('pays every withdrawal on chain exactly once when the bank is SIGKILLed after the holds and after the payments', async () => {
    const WITHDRAWALS = 6;
    const rig = await startRig();
    const env = bankEnvironment(rig);
    let bank = await startBankProcess(env);
    const db = await database(env);
    const payer = Wallet.createRandom();
    const funded = dcc(100);
    await deposit(rig, bank, rig.depositors[0]!, funded, payer.address);

    const recipients = Array.from({ length: WITHDRAWALS }, () => Wallet.createRandom().address);
    const amounts = recipients.map((_, i) => dcc(i + 1));
    const withdrawn = amounts.reduce((sum, amount) => sum + amount, 0n);
    const requested = await Promise.all(recipients.map((to, i) => requestWithdrawal(bank, payer, to, amounts[i]!)));
    expect(await balanceOf(bank, payer.address)).toBe(funded - withdrawn); // every amount held

    // Kill 1: the holds are taken and the sender is signing (each transaction stored before it is broadcast).
    await waitFor('the sender to sign a withdrawal transaction', async () => Number(await scalar(db, 'SELECT count(*) FROM bridge_withdrawals WHERE raw_tx IS NOT NULL')) > 0, 10_000, 2);
    await bank.sigkill();
    const atFirstKill = await withdrawalStates(db);
    // While the bank is dead the chain mines whatever it was given: the vault pays those.
    await rig.chain.mine(1);
    const paidCount = async () => (await Promise.all(requested.map((w) => rig.contracts.vault.withdrawn(w.withdrawalId)))).filter(Boolean).length;
    const paidWhileDead = await paidCount();

    const firstRestart = Date.now();
    bank = await startBankProcess(env);
    await waitFor('every withdrawal paid on chain', async () => {
      if ((await paidCount()) === WITHDRAWALS) return true;
      await rig.chain.mine(1);
      return false;
    }, 60_000, 100);
    const allPaidAt = Date.now();
    // Kill 2: every payment is on chain, the confirmations (and so the burns) are not all there yet.
    await bank.sigkill();
    const atSecondKill = await withdrawalStates(db);

    const secondRestart = Date.now();
    bank = await startBankProcess(env);
    await waitFor('every withdrawal confirmed', async () => {
      const states = await Promise.all(requested.map(async (w) => ((await (await fetch(`${bank.url}/withdrawals/${w.withdrawalId}`)).json()) as Withdrawal).status));
      if (states.every((status) => status === 'confirmed')) return true;
      if (states.includes('failed')) throw new Error(`a withdrawal failed: ${states.join(', ')}`);
      await rig.chain.mine(1);
      return false;
    }, 60_000, 100);
    const confirmedAt = Date.now();
    log(
      `withdrawals: kill 1 at ${JSON.stringify(atFirstKill)}, ${paidWhileDead} paid while the bank was dead; restart -> all ${WITHDRAWALS} paid in ` +
        `${allPaidAt - firstRestart} ms; kill 2 at ${JSON.stringify(atSecondKill)}; restart -> all confirmed in ${confirmedAt - secondRestart} ms`,
    );

    for (const [i, w] of requested.entries()) {
      expect((await queryWithdrawals(rig.provider, rig.contracts.addresses.vault, w.withdrawalId, rig.deployBlock)).length).toBe(1);
      expect(await rig.contracts.token.balanceOf(recipients[i]!)).toBe(amounts[i]);
      const hold = (await db.query("SELECT status, posted::text, amount::text FROM holds WHERE reference = $1", [`withdrawal:${w.withdrawalId}`])).rows;
      expect(hold).toEqual([{ status: 'released', posted: amounts[i]!.toString(), amount: amounts[i]!.toString() }]); // burnt: all of it posted to the bridge
    }
    expect(await balanceOf(bank, payer.address)).toBe(funded - withdrawn);
    const inVault = await rig.contracts.token.balanceOf(rig.contracts.addresses.vault);
    expect(inVault).toBe(funded - withdrawn);
    expect(await bridgeBalance(db)).toBe(-inVault); // the ledger and the chain agree
    await expectLedgerClean(db);
  }, 240_000);

  // ---------------------------------------------------------------- (c) a deep reorganisation

  it('reports a reorganisation deeper than the confirmations once, credits nothing twice and goes on crediting', async () => {
    const rig = await startRig();
    const env = bankEnvironment(rig);
    const bank = await startBankProcess(env);
    const db = await database(env);
    const [alice, bob, carol, dave] = rig.depositors as [Wallet, Wallet, Wallet, Wallet];
    const [toAlice, toBob, toCarol, toDave] = Array.from({ length: 4 }, () => Wallet.createRandom().address) as [string, string, string, string];
    await rig.chain.mine(CONFIRMATIONS + 4);
    await watcherCaughtUp(rig, db);

    const snapshot = await rig.chain.snapshot();
    // Two deposits, credited once final: alice's will be mined again after the reorganisation,
    // carol's will not (its credit stands: it was final).
    const aliceRaw = await signedDeposit(rig, alice, dcc(5), toAlice, await rig.provider.getTransactionCount(alice.address, 'latest'));
    const carolRaw = await signedDeposit(rig, carol, dcc(2), toCarol, await rig.provider.getTransactionCount(carol.address, 'latest'));
    const [aliceBefore] = await minedAll(rig, [(await rig.provider.broadcastTransaction(aliceRaw)).hash]);
    await minedAll(rig, [(await rig.provider.broadcastTransaction(carolRaw)).hash]);
    await rig.chain.mine(CONFIRMATIONS + 2);
    await waitForBalance(bank, toAlice, dcc(5), "alice's deposit credited");
    await waitForBalance(bank, toCarol, dcc(2), "carol's deposit credited");
    await watcherCaughtUp(rig, db);
    const heightBefore = await rig.chain.blockNumber();

    const before = await depositedIn(rig, aliceBefore!);
    await rig.chain.revert(snapshot);
    const revertedAt = Date.now();
    // The new branch: bob deposits first (paying more), alice's very transaction comes after it in
    // the same block: another block, another log index, and bob's deposit takes the vault's
    // depositId alice's had (keyed by depositId, bob would never be credited and alice twice).
    const bobSent = await attachVault(rig.contracts.addresses.vault, bob).deposit(dcc(3), toBob, { gasLimit: DEPOSIT_GAS, maxFeePerGas: gwei(100), maxPriorityFeePerGas: gwei(5) });
    const aliceAgain = await rig.provider.broadcastTransaction(aliceRaw);
    const [bobReceipt, aliceAfter] = await minedAll(rig, [bobSent.hash, aliceAgain.hash]);
    const after = await depositedIn(rig, aliceAfter!);
    expect(aliceAfter!.hash).toBe(aliceBefore!.hash);
    expect(after.logIndex).not.toBe(before.logIndex);
    expect((await depositedIn(rig, bobReceipt!)).depositId).toBe(before.depositId);
    // A longer branch than the one it replaced, then bob's confirmations.
    await rig.chain.mine(Math.max(CONFIRMATIONS, heightBefore - (await rig.chain.blockNumber()) + 1));
    const bobCreditedAt = await waitForBalance(bank, toBob, dcc(3), "bob's deposit on the new branch credited");
    await watcherCaughtUp(rig, db);
    expect(await balanceOf(bank, toAlice)).toBe(dcc(5)); // mined again, credited once
    expect(await balanceOf(bank, toCarol)).toBe(dcc(2)); // gone from the chain, credited when final: it stands

    // The bridge goes on.
    await deposit(rig, bank, dave, dcc(4), toDave);
    await sleep(500); // a few more scans: a second report would show now
    expect(linesWith(bank, 'a reorganisation deeper than')).toBe(1);
    expect(await metric(bank, 'commune_bank_bridge_deep_reorgs_total')).toBe(1);
    expect(await scalar(db, 'SELECT count(*)::int FROM bridge_deposits WHERE tx_hash = $1', [aliceBefore!.hash.toLowerCase()])).toBe(1);
    expect(await scalar(db, "SELECT count(*)::int FROM transfers WHERE kind = 'deposit'")).toBe(4);
    const ledgerBacked = -(await bridgeBalance(db));
    const inVault = await rig.contracts.token.balanceOf(rig.contracts.addresses.vault);
    expect(ledgerBacked).toBe(dcc(5 + 2 + 3 + 4));
    expect(inVault).toBe(dcc(5 + 3 + 4));
    await expectLedgerClean(db);
    log(
      `deep reorg: reported once; alice's deposit re-mined at log index ${after.logIndex} (was ${before.logIndex}) not credited again; ` +
        `bob's deposit on the new branch credited ${bobCreditedAt - revertedAt} ms after the revert; ledger credits exceed the vault by ` +
        `${formatUnits(ledgerBacked - inVault, 18)} DCC: carol's deposit, final and then reorganised away, stands`,
    );
  }, 180_000);

  // ---------------------------------------------------------------- (d) a fresh dev chain

  it('moves to a fresh dev chain under a bank that knew the old one: one warning, deposits on the new chain credited, withdrawals paid once', async () => {
    const port = await freePort();
    let rig = await startRig({ port });
    const { addresses, deployBlock } = { addresses: rig.contracts.addresses, deployBlock: rig.deployBlock };
    const env = bankEnvironment(rig, { BRIDGE_DEV_CHAIN: '1' });
    let bank = await startBankProcess(env);
    const db = await database(env);
    const payer = Wallet.createRandom();
    const recipient = Wallet.createRandom().address;
    const depositor = rig.depositors[0]!;
    // The same signed bytes on every chain: a dev chain replays the same accounts and nonces, so
    // `pnpm start` funding the same keystore makes deposits with the very same transaction hash.
    const rawDeposit = await signedDeposit(rig, depositor, dcc(20), payer.address, await rig.provider.getTransactionCount(depositor.address, 'latest'));
    const depositHash = Transaction.from(rawDeposit).hash!;
    await minedAll(rig, [(await rig.provider.broadcastTransaction(rawDeposit)).hash]);
    await rig.chain.mine(CONFIRMATIONS);
    await waitForBalance(bank, payer.address, dcc(20), 'the deposit on chain A credited');
    // A withdrawal sent on chain A and never mined there.
    const pending = await requestWithdrawal(bank, payer, recipient, dcc(5));
    const oldRawTx = await waitFor('the withdrawal sent on chain A', async () => {
      const row = (await db.query("SELECT raw_tx FROM bridge_withdrawals WHERE withdrawal_id = $1 AND status = 'sent'", [pending.withdrawalId])).rows[0];
      return row?.raw_tx as string | undefined;
    }, 10_000, 20);

    // `pnpm start` again: everything stops, the chain comes back fresh (ganache's genesis carries its start time).
    await bank.stop();
    await rig.chain.stop();
    await sleep(1_100);
    rig = await startRig({ port });
    expect(rig.contracts.addresses).toEqual(addresses);
    expect(rig.deployBlock).toBe(deployBlock);
    await minedAll(rig, [(await rig.provider.broadcastTransaction(rawDeposit)).hash]);
    await rig.chain.mine(CONFIRMATIONS);
    const restartedAt = Date.now();
    bank = await startBankProcess(env);
    const upAt = Date.now();
    const creditedAt = await waitForBalance(bank, payer.address, dcc(20 + 20 - 5), 'the same deposit on chain B credited (the withdrawal still held)');
    const confirmedAt = await waitFor('the withdrawal signed again and confirmed on chain B', async () => {
      const current = (await (await fetch(`${bank.url}/withdrawals/${pending.withdrawalId}`)).json()) as Withdrawal;
      if (current.status === 'failed') throw new Error('the withdrawal failed on chain B');
      if (current.status === 'confirmed') return Date.now();
      await rig.chain.mine(1);
      return null;
    }, 60_000, 100);
    // The transaction signed for chain A cannot pay a second time on chain B: the vault pays an id once.
    await rig.provider.broadcastTransaction(oldRawTx).catch(() => undefined);
    await rig.chain.mine(2);
    expect(await rig.contracts.token.balanceOf(recipient)).toBe(dcc(5));
    expect((await queryWithdrawals(rig.provider, addresses.vault, pending.withdrawalId, deployBlock)).length).toBe(1);
    await sleep(500);
    expect(linesWith(bank, 'a new dev chain (BRIDGE_DEV_CHAIN)')).toBe(1);
    expect(await metric(bank, 'commune_bank_bridge_dev_chain_resets_total')).toBe(1);
    log(
      `fresh dev chain at restart: bank up in ${upAt - restartedAt} ms, one warning; the deposit replayed with the same hash credited ${creditedAt - upAt} ms ` +
        `after it was up, the withdrawal signed for the old chain paid once on the new one and confirmed ${confirmedAt - upAt} ms after`,
    );

    // The chain replaced again under the running bank.
    await rig.chain.stop();
    await sleep(1_100);
    const replacedAt = Date.now();
    rig = await startRig({ port });
    await minedAll(rig, [(await rig.provider.broadcastTransaction(rawDeposit)).hash]);
    await rig.chain.mine(CONFIRMATIONS);
    const creditedOnC = await waitForBalance(bank, payer.address, dcc(20 * 3 - 5), 'the same deposit on chain C credited by the running bank');
    await sleep(500);
    expect(linesWith(bank, 'a new dev chain (BRIDGE_DEV_CHAIN)')).toBe(2);
    expect(await metric(bank, 'commune_bank_bridge_dev_chain_resets_total')).toBe(2);
    expect(await scalar(db, 'SELECT count(DISTINCT genesis_hash)::int FROM bridge_deposits WHERE tx_hash = $1', [depositHash.toLowerCase()])).toBe(3);
    // Ledger balances stay: every credit of every chain, minus the one withdrawal.
    expect(await bridgeBalance(db)).toBe(-dcc(20 * 3 - 5));
    await expectLedgerClean(db);
    log(`fresh dev chain under the running bank: one more warning; its deposit credited ${creditedOnC - replacedAt} ms after the old chain stopped`);
  }, 240_000);

  // ---------------------------------------------------------------- (e) another chain, not a dev chain

  it('stops the bridge once, loudly, when the node becomes another chain and no dev chain was declared, and goes on when it is back', async () => {
    const port = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), 'commune-chaos-chain-'));
    cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
    let rig = await startRig({ port, dbPath: dataDir });
    const env = bankEnvironment(rig);
    const bank = await startBankProcess(env);
    const before = Wallet.createRandom().address;
    await deposit(rig, bank, rig.depositors[0]!, dcc(1), before);

    await rig.chain.stop();
    await sleep(1_100);
    const other = await startRig({ port });
    const stranger = Wallet.createRandom().address;
    const sent = await attachVault(other.contracts.addresses.vault, other.depositors[1]!).deposit(dcc(9), stranger, { gasLimit: DEPOSIT_GAS });
    await minedAll(other, [sent.hash]);
    await other.chain.mine(CONFIRMATIONS + 2);
    await waitFor('the bank to stop its bridge', async () => (await metric(bank, 'commune_bank_bridge_halted')) === 1, 15_000, 50);
    await sleep(2_000); // about 20 scans and passes: each would have logged before
    expect(linesWith(bank, 'the Ethereum bridge has stopped')).toBe(1);
    expect(await balanceOf(bank, stranger)).toBe(0n);

    await other.chain.stop();
    rig = { ...rig, chain: await startLocalChain({ port, mining: 'manual', dbPath: dataDir }) };
    cleanups.push(() => rig.chain.stop());
    const after = Wallet.createRandom().address;
    const resumedAt = Date.now();
    await deposit(rig, bank, rig.depositors[0]!, dcc(2), after);
    expect(await metric(bank, 'commune_bank_bridge_halted')).toBe(0);
    expect(linesWith(bank, 'the Ethereum bridge has stopped')).toBe(1);
    expect(await balanceOf(bank, stranger)).toBe(0n);
    log(`another chain without BRIDGE_DEV_CHAIN: one error, nothing credited from it; the right chain back -> a deposit credited ${Date.now() - resumedAt} ms after`);
  }, 180_000);
});
