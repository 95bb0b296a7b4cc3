import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Wallet, parseUnits, type ContractTransactionResponse, type JsonRpcProvider, type TransactionReceipt } from 'ethers';
import pg from 'pg';
import { attachContracts, connectProvider, deployContracts, startLocalChain, writeBridgeConfig, type BridgeContracts, type LocalChain } from '@commune/chain';
import { SignedKind, signRequest, type Account, type HistoryPage, type Withdrawal, type WithdrawalRequest } from '@commune/protocol';
import { startBank, type BankApp } from '../src/bank-app.js';
import { SERVICE_TOKEN } from './ledger-support.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../test/support/services.js';

const dcc = (whole: number | string) => parseUnits(String(whole), 18);
const CONFIRMATIONS = 3;
/** The test's own transactions carry a gas limit, so ethers does not ask the node to estimate one. */
const gas = { gasLimit: 200_000 };
/** Per test; each wait inside has its own bound (waitFor, 10 s) and says what it waited for. */
const TEST_TIMEOUT_MS = 30_000;

/** The bank with its bridge, as main.ts starts it (AppModule imports BridgeModule). */
async function startBankWithBridge(env: Record<string, string>): Promise<BankApp> {
  return startBank({ BANK_SERVICE_TOKEN: SERVICE_TOKEN, ...env });
}

/**
 * The chain mines only when a test says so (mining: 'manual'): a block, its confirmations and a
 * reorganisation are the test's doing, and the bank's transactions wait in the pool meanwhile, as
 * on a real chain between blocks.
 */
describe('Ethereum bridge (ganache, real Postgres and Redis)', () => {
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let operator: Wallet;
  let depositor: Wallet;
  let contracts: BridgeContracts;
  let bank: BankApp;
  let database: pg.Client;
  let configDir: string;
  let env: Record<string, string>;

  /** Sends, mines one block, returns the receipt. */
  async function mined(sending: Promise<ContractTransactionResponse>): Promise<TransactionReceipt> {
    const transaction = await sending;
    await chain.mine(1);
    const receipt = await transaction.wait();
    if (!receipt) throw new Error(`no receipt for ${transaction.hash}`);
    return receipt;
  }

  beforeAll(async () => {
    chain = await startLocalChain({ port: 0, mining: 'manual' });
    provider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 20 });
    operator = new Wallet(chain.accounts[0], provider);
    depositor = new Wallet(chain.accounts[1], provider);
    const deploying = deployContracts(operator);
    // deployContracts waits for two deployments: mine until it returns.
    const miner = setInterval(() => void chain.mine(1).catch(() => undefined), 20);
    const deployed = await deploying.finally(() => clearInterval(miner));
    contracts = deployed;
    await mined(contracts.token.mint(depositor.address, dcc(1_000), gas));
    configDir = mkdtempSync(join(tmpdir(), 'commune-bridge-'));
    const configFile = join(configDir, 'chain.json');
    writeBridgeConfig(configFile, {
      rpcUrl: chain.url,
      chainId: chain.chainId,
      token: contracts.addresses.token,
      vault: contracts.addresses.vault,
      operatorKey: chain.accounts[0],
      startBlock: deployed.deployBlock,
    });
    env = isolatedEnvironment({
      BRIDGE_CONFIG_FILE: configFile,
      BRIDGE_CONFIRMATIONS: String(CONFIRMATIONS),
      BRIDGE_POLL_INTERVAL_MS: '100',
      BRIDGE_MAX_SEND_ATTEMPTS: '2',
      BRIDGE_RESEND_AFTER_MS: '300',
    });
    bank = await startBankWithBridge(env);
    database = new pg.Client({ connectionString: env.DATABASE_URL, options: `-c search_path="${env.DATABASE_SCHEMA}"` });
    await database.connect();
  }, 60_000);

  afterAll(async () => {
    await bank?.close();
    await database?.end();
    provider?.destroy();
    await chain?.stop();
    if (env) await dropIsolated(env);
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  }, TEST_TIMEOUT_MS);

  // ---------------------------------------------------------------- helpers

  async function balanceOf(address: string): Promise<bigint> {
    const response = await fetch(`${bank.url}/accounts/${address}`);
    if (response.status !== 200) throw new Error(`GET /accounts/${address}: ${response.status} ${await response.text()}`);
    return BigInt(((await response.json()) as Account).balance);
  }

  /** The last block the deposit watcher has read. */
  async function depositCursor(): Promise<number> {
    const result = await database.query<{ block_number: string }>('SELECT block_number FROM bridge_cursors WHERE name LIKE $1', ['deposits:%']);
    return result.rows[0] ? Number(result.rows[0].block_number) : -1;
  }

  /** Waits until the watcher has read every block that is final now: what it will ever credit at this height, it has. */
  async function watcherCaughtUp(): Promise<void> {
    const finalBlock = (await chain.blockNumber()) - CONFIRMATIONS;
    await waitFor(`the deposit watcher to read up to block ${finalBlock}`, async () => (await depositCursor()) >= finalBlock);
  }

  /** Approves and deposits (one block each); returns the deposit's block. */
  async function deposit(amount: bigint, ledgerAccount: string): Promise<number> {
    const asDepositor = attachContracts(contracts.addresses, depositor);
    await mined(asDepositor.token.approve(contracts.addresses.vault, amount, gas));
    return (await mined(asDepositor.vault.deposit(amount, ledgerAccount, gas))).blockNumber;
  }

  /** Deposits, confirms and waits until the ledger shows it. */
  async function fund(ledgerAccount: string, amount: bigint): Promise<void> {
    const before = await balanceOf(ledgerAccount);
    await deposit(amount, ledgerAccount);
    await chain.mine(CONFIRMATIONS);
    await waitFor(`a deposit of ${amount} to ${ledgerAccount}`, async () => (await balanceOf(ledgerAccount)) === before + amount);
  }

  /**
   * Mines until the bank has no open withdrawal, so the test may send with the operator key itself
   * without taking a nonce the bank's sender holds.
   */
  async function senderIdle(): Promise<void> {
    await waitFor('the bank to finish its open withdrawals', async () => {
      const open = await database.query("SELECT count(*)::int AS open FROM bridge_withdrawals WHERE status IN ('pending', 'sent')");
      if (open.rows[0].open === 0) return true;
      await chain.mine(1);
      return false;
    });
  }

  async function signedWithdrawal(wallet: Pick<Wallet, 'address' | 'signMessage'>, overrides: Partial<WithdrawalRequest> = {}) {
    const withdrawal: WithdrawalRequest = {
      from: wallet.address,
      to: Wallet.createRandom().address,
      amount: dcc(1).toString(),
      idempotencyKey: `withdraw-${Math.random().toString(36).slice(2)}`,
      expiresAt: Date.now() + 60_000,
      ...overrides,
    };
    return { withdrawal, signature: await signRequest(wallet, SignedKind.withdrawal, withdrawal) };
  }

  async function post(body: unknown): Promise<{ status: number; body: Withdrawal & { code?: string; message?: string } }> {
    const response = await fetch(`${bank.url}/withdrawals`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as Withdrawal & { code?: string } };
  }

  async function withdrawal(id: string): Promise<Withdrawal> {
    const response = await fetch(`${bank.url}/withdrawals/${id}`);
    if (response.status !== 200) throw new Error(`GET /withdrawals/${id}: ${response.status} ${await response.text()}`);
    return (await response.json()) as Withdrawal;
  }

  async function waitForStatus(id: string, status: Withdrawal['status']): Promise<Withdrawal> {
    return waitFor(`withdrawal ${id} to be ${status}`, async () => {
      const current = await withdrawal(id);
      return current.status === status ? current : null;
    });
  }

  /** Mines a block at a time until the vault has paid the withdrawal (the bank's transaction waits in the pool). */
  async function minedUntilPaid(id: string): Promise<void> {
    await waitFor(`the vault to pay withdrawal ${id}`, async () => {
      await chain.mine(1);
      return contracts.vault.withdrawn(id);
    });
  }

  async function row(id: string): Promise<Record<string, unknown>> {
    return (await database.query('SELECT * FROM bridge_withdrawals WHERE withdrawal_id = $1', [id])).rows[0];
  }

  // ---------------------------------------------------------------- deposits

  it('credits a deposit exactly once, only after N confirmations', async () => {
    const account = Wallet.createRandom().address;
    const block = await deposit(dcc(10), account);
    await chain.mine(CONFIRMATIONS - 1);
    await watcherCaughtUp();
    expect(await balanceOf(account)).toBe(0n);

    await chain.mine(1);
    await waitFor('the deposit to be credited', async () => (await balanceOf(account)) === dcc(10));
    await chain.mine(5);
    await watcherCaughtUp();
    expect(await balanceOf(account)).toBe(dcc(10));
    const rows = await database.query('SELECT block_number FROM bridge_deposits WHERE ledger_account = $1', [account]);
    expect(rows.rows).toEqual([{ block_number: String(block) }]);
  }, TEST_TIMEOUT_MS);

  it('credits nothing for a deposit reorganised away before it was final', async () => {
    const account = Wallet.createRandom().address;
    const snapshot = await chain.snapshot();
    await deposit(dcc(7), account);
    await chain.mine(1);
    await watcherCaughtUp();
    await chain.revert(snapshot);
    await chain.mine(CONFIRMATIONS + 3);
    await watcherCaughtUp();
    expect(await balanceOf(account)).toBe(0n);
    const rows = await database.query('SELECT 1 FROM bridge_deposits WHERE ledger_account = $1', [account]);
    expect(rows.rowCount).toBe(0);
  }, TEST_TIMEOUT_MS);

  it('credits nothing twice after a restart that lost its cursor and its deposit records', async () => {
    const account = Wallet.createRandom().address;
    await fund(account, dcc(3));
    await bank.close();
    // As if the bank stopped after crediting but before it recorded the event or moved its cursor.
    await database.query('DELETE FROM bridge_deposits WHERE ledger_account = $1', [account]);
    await database.query("UPDATE bridge_cursors SET block_number = 0, block_hash = NULL WHERE name LIKE 'deposits:%'");
    bank = await startBankWithBridge(env);
    await watcherCaughtUp();
    expect(await balanceOf(account)).toBe(dcc(3));
    const rows = await database.query('SELECT 1 FROM bridge_deposits WHERE ledger_account = $1', [account]);
    expect(rows.rowCount).toBe(1);
  }, TEST_TIMEOUT_MS);

  // ---------------------------------------------------------------- withdrawals

  it('pays a withdrawal on chain, confirms it after N confirmations and burns the hold', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(10));
    const request = await signedWithdrawal(payer, { amount: dcc(4).toString() });
    const { status, body } = await post(request);
    expect(status).toBe(202);
    expect(body).toMatchObject({ from: payer.address, to: request.withdrawal.to, amount: dcc(4).toString() });
    expect(await balanceOf(payer.address)).toBe(dcc(6)); // held

    const sent = await waitForStatus(body.withdrawalId, 'sent');
    expect(sent.txHash).toMatch(/^0x[0-9a-f]{64}$/);
    await minedUntilPaid(body.withdrawalId);
    expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(dcc(4));
    expect((await withdrawal(body.withdrawalId)).status).toBe('sent');
    await chain.mine(CONFIRMATIONS);
    const confirmed = await waitForStatus(body.withdrawalId, 'confirmed');
    expect(confirmed.txHash).toBe(sent.txHash);
    expect(await balanceOf(payer.address)).toBe(dcc(6));

    // A retry gets the first withdrawal; nothing is paid twice.
    const again = await post(request);
    expect(again.body).toEqual(confirmed);
    await chain.mine(2);
    expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(dcc(4));
    const history = (await (await fetch(`${bank.url}/accounts/${payer.address}/history`)).json()) as HistoryPage;
    expect(history.entries.map((entry) => entry.kind)).toEqual(expect.arrayContaining(['deposit', 'hold']));
  }, TEST_TIMEOUT_MS);

  it('refuses a forged, expired, unfunded or replayed withdrawal request', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(2));
    const forged = await signedWithdrawal(payer);
    forged.signature = (await signedWithdrawal(Wallet.createRandom(), forged.withdrawal)).signature;
    expect((await post(forged)).body.code).toBe('EBADSIGNATURE');
    // A transfer signature over the same fields is not a withdrawal's.
    const asTransfer = await signedWithdrawal(payer);
    asTransfer.signature = await signRequest(payer, SignedKind.transfer, asTransfer.withdrawal);
    expect(await post(asTransfer)).toMatchObject({ status: 401, body: { code: 'EBADSIGNATURE' } });
    expect((await post(await signedWithdrawal(payer, { expiresAt: Date.now() - 1 }))).body.code).toBe('EEXPIRED');
    const tooMuch = await post(await signedWithdrawal(payer, { amount: dcc(3).toString(), idempotencyKey: 'withdraw-too-much' }));
    expect(tooMuch).toMatchObject({ status: 402, body: { code: 'ENOFUNDS' } });
    expect(await balanceOf(payer.address)).toBe(dcc(2));
    expect((await post({ withdrawal: { from: payer.address } })).body.code).toBe('EINVAL');

    const first = await signedWithdrawal(payer, { amount: '1', idempotencyKey: 'withdraw-reused' });
    expect((await post(first)).status).toBe(202);
    const reused = await post(await signedWithdrawal(payer, { amount: '2', idempotencyKey: 'withdraw-reused' }));
    expect(reused).toMatchObject({ status: 409, body: { code: 'EREPLAY' } });
    expect((await fetch(`${bank.url}/withdrawals/0x${'0'.repeat(64)}`)).status).toBe(404);
    await senderIdle();
  }, TEST_TIMEOUT_MS);

  it('fails a withdrawal the vault cannot cover and gives the funds back', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(5));
    // Drain the vault with the bank's operator key (no withdrawal is open: no nonce is taken).
    await senderIdle();
    const vaultBalance = await contracts.token.balanceOf(contracts.addresses.vault);
    await mined(contracts.vault.withdraw(operator.address, vaultBalance, '0x' + 'd1'.repeat(32), gas));

    const request = await signedWithdrawal(payer, { amount: dcc(5).toString() });
    const { body } = await post(request);
    const failed = await waitForStatus(body.withdrawalId, 'failed');
    expect(failed.txHash).toBeNull();
    expect(await row(body.withdrawalId)).toMatchObject({ nonce: null, error: expect.stringContaining('InsufficientBalance') });
    expect(await balanceOf(payer.address)).toBe(dcc(5));
    expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(0n);

    await mined(contracts.token.transfer(contracts.addresses.vault, vaultBalance, gas)); // refill for the tests that follow
  }, TEST_TIMEOUT_MS);

  it('fails a withdrawal the operator cannot pay gas for, after bounded refused broadcasts, and gives the funds back', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(5));
    const operatorEther = await provider.getBalance(operator.address);
    await chain.setBalance(operator.address, 0n);
    try {
      const request = await signedWithdrawal(payer, { amount: dcc(2).toString() });
      const { body } = await post(request);
      await waitForStatus(body.withdrawalId, 'failed');
      expect(await balanceOf(payer.address)).toBe(dcc(5));
      await chain.mine(1);
      expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(0n);
      expect(await row(body.withdrawalId)).toMatchObject({ rejections: 2, accepted: false, error: expect.stringContaining('refused') });
    } finally {
      await chain.setBalance(operator.address, operatorEther);
    }
  }, TEST_TIMEOUT_MS);

  it('sends again, byte for byte, a withdrawal whose block was reorganised away, and pays it once', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(5));
    const snapshot = await chain.snapshot();
    const request = await signedWithdrawal(payer, { amount: dcc(1).toString() });
    const { body } = await post(request);
    const sent = await waitForStatus(body.withdrawalId, 'sent');
    await minedUntilPaid(body.withdrawalId);
    const { nonce } = await row(body.withdrawalId);
    await chain.revert(snapshot);
    expect(await contracts.vault.withdrawn(body.withdrawalId)).toBe(false);

    await minedUntilPaid(body.withdrawalId);
    await chain.mine(CONFIRMATIONS);
    const confirmed = await waitForStatus(body.withdrawalId, 'confirmed');
    expect(confirmed.txHash).toBe(sent.txHash);
    expect(await row(body.withdrawalId)).toMatchObject({ nonce, replacements: 0 });
    expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(dcc(1));
    expect(await balanceOf(payer.address)).toBe(dcc(4));
  }, TEST_TIMEOUT_MS);

  it('replaces a transaction left unmined with higher fees, then cancels it, and gives the funds back', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(5));
    const request = await signedWithdrawal(payer, { amount: dcc(2).toString() });
    const { body } = await post(request);
    const sent = await waitForStatus(body.withdrawalId, 'sent');
    // No block is mined: after BRIDGE_RESEND_AFTER_MS the sender sends it again, then replaces it
    // twice (BRIDGE_MAX_SEND_ATTEMPTS) with higher fees, then with a cancellation.
    const cancelling = await waitFor('the sender to replace, then cancel, the unmined transaction', async () => {
      const current = await row(body.withdrawalId);
      // Stored before it is broadcast: wait until the node holds the cancellation.
      return current.cancelling && (await provider.getTransaction(current.tx_hash as string)) ? current : null;
    });
    expect(cancelling.replacements).toBe(3);
    expect(cancelling.tx_hash).not.toBe(sent.txHash);
    await chain.mine(1);
    expect(await provider.getTransactionCount(operator.address, 'latest')).toBeGreaterThan(Number(cancelling.nonce));
    await chain.mine(CONFIRMATIONS);
    const failed = await waitForStatus(body.withdrawalId, 'failed');
    expect(failed.txHash).toBeNull();
    expect(await contracts.vault.withdrawn(body.withdrawalId)).toBe(false);
    expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(0n);
    expect(await balanceOf(payer.address)).toBe(dcc(5));
  }, TEST_TIMEOUT_MS);

  it('finishes a withdrawal across a bank restart: sent before, confirmed after', async () => {
    const payer = Wallet.createRandom();
    await fund(payer.address, dcc(5));
    const request = await signedWithdrawal(payer, { amount: dcc(2).toString() });
    const { body } = await post(request);
    await waitForStatus(body.withdrawalId, 'sent');
    await minedUntilPaid(body.withdrawalId);
    await bank.close();
    await chain.mine(CONFIRMATIONS);
    bank = await startBankWithBridge(env);
    await waitForStatus(body.withdrawalId, 'confirmed');
    expect(await contracts.token.balanceOf(request.withdrawal.to)).toBe(dcc(2));
    expect(await balanceOf(payer.address)).toBe(dcc(3));
  }, TEST_TIMEOUT_MS);

  it('tells clients where to deposit', async () => {
    const info = await (await fetch(`${bank.url}/bridge`)).json();
    expect(info).toEqual({ enabled: true, chainId: chain.chainId, token: contracts.addresses.token, vault: contracts.addresses.vault, confirmations: CONFIRMATIONS });
  });
});
