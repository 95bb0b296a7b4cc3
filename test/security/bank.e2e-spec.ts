import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUnits, Wallet, type JsonRpcProvider } from 'ethers';
import pg from 'pg';
import { attachContracts, connectProvider, deployContracts, startLocalChain, writeBridgeConfig, type BridgeContracts, type LocalChain } from '@commune/chain';
import { ErrorCode, SignedKind, signRequest, type Account, type Withdrawal, type WithdrawalRequest } from '@commune/protocol';
import { freePort, repoRoot } from '../support/processes.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../support/services.js';

type Reply<T = Record<string, unknown>> = { status: number; body: T; text: string };
type ErrorBody = { ok: false; code: string; message: string };

const bankMain = join(repoRoot, 'apps/bank/dist/main.js');
const TOKEN = 'security-suite-bank-token-0123456789abcdef';
const dcc = (whole: number | string) => parseUnits(String(whole), 18);
const gas = { gasLimit: 200_000 };

interface BankProcess {
  child: ChildProcess;
  url: string;
  port: number;
  output(): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/**
 * The bank as `pnpm start` and the image run it: `node apps/bank/dist/main.js`, its environment
 * exactly `env` on top of this process's (a key set to undefined is removed, so the bank sees
 * its own default). Resolves once it says it listens, or rejects with its output if it exits.
 */
async function spawnBank(env: Record<string, string | undefined>): Promise<BankProcess> {
  const port = await freePort();
  const merged: Record<string, string | undefined> = { ...process.env, ...env, PORT: String(port) };
  for (const [key, value] of Object.entries(merged)) if (value === undefined) delete merged[key];
  const child = spawn(process.execPath, [bankMain], { env: merged as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-100_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const bank: BankProcess = {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
  const deadline = Date.now() + 30_000;
  while (!output.includes('bank listening on')) {
    if (child.exitCode !== null) throw new Error(`the bank exited (${child.exitCode}): ${output}`);
    if (Date.now() > deadline) {
      await bank.stop();
      throw new Error(`the bank did not start within 30 s: ${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return bank;
}

/** Starts the bank expecting it to refuse: resolves with its exit code and output. */
async function refusedStart(env: Record<string, string | undefined>): Promise<{ code: number | null; output: string }> {
  let output = '';
  try {
    const bank = await spawnBank(env);
    await bank.stop();
    throw new Error(`the bank started: ${bank.output()}`);
  } catch (error) {
    output = (error as Error).message;
    if (output.startsWith('the bank started')) throw error;
  }
  const code = Number(/the bank exited \((\d+)\)/.exec(output)?.[1] ?? NaN);
  return { code, output };
}

async function call<T = Record<string, unknown>>(url: string, method: string, path: string, body?: unknown, token?: string | null): Promise<Reply<T>> {
  const response = await fetch(url + path, {
    method,
    headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: response.status, body: parsed as T, text };
}

/** The addresses a TCP port listens on, from /proc/net/tcp and tcp6 (hex local address, state 0A = LISTEN). */
function listeningAddresses(port: number): string[] {
  const found: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 4 || fields[3] !== '0A') continue;
      const [address, portHex] = fields[1]!.split(':');
      if (parseInt(portHex!, 16) === port) found.push(address!);
    }
  }
  return found;
}

/** Text that must never reach a stranger: stacks, file paths, SQL and driver messages. */
const leaks = /at \S+ \(|\.ts:\d+|\.js:\d+|node_modules|\/work\/|relation|does not exist|SELECT|INSERT|postgres|prisma|TypeError|stack/i;

/**
 * The bank facing hostile users and strangers, as a real process over HTTP with a real Postgres
 * schema and a real (ganache) chain behind its bridge: a transfer signature cannot be replayed as
 * a withdrawal, the bank does not start without a secret token, service endpoints answer only
 * the token, it listens on loopback unless told otherwise, and internal errors leave no text.
 */
describe('the bank against hostile users (security, e2e)', () => {
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let contracts: BridgeContracts;
  let configDir: string;
  let env: Record<string, string>;
  let bank: BankProcess;
  const extraEnvs: Array<Record<string, string>> = [];

  beforeAll(async () => {
    chain = await startLocalChain({ port: 0 });
    provider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 20 });
    const operator = new Wallet(chain.accounts[0]!, provider);
    const deployed = await deployContracts(operator);
    contracts = deployed;
    await (await contracts.token.mint(new Wallet(chain.accounts[1]!).address, dcc(1_000), gas)).wait();
    configDir = mkdtempSync(join(tmpdir(), 'commune-bank-security-'));
    const configFile = join(configDir, 'chain.json');
    writeBridgeConfig(configFile, {
      rpcUrl: chain.url,
      chainId: chain.chainId,
      token: contracts.addresses.token,
      vault: contracts.addresses.vault,
      operatorKey: chain.accounts[0]!,
      startBlock: deployed.deployBlock,
    });
    env = isolatedEnvironment({ BANK_SERVICE_TOKEN: TOKEN, BRIDGE_CONFIG_FILE: configFile, BRIDGE_CONFIRMATIONS: '1', BRIDGE_POLL_INTERVAL_MS: '100' });
    bank = await spawnBank(env);
  }, 60_000);

  afterAll(async () => {
    await bank?.stop();
    provider?.destroy();
    await chain?.stop();
    if (env) await dropIsolated(env);
    for (const extra of extraEnvs) await dropIsolated(extra);
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  }, 30_000);

  const balanceOf = async (address: string): Promise<bigint> => BigInt((await call<Account>(bank.url, 'GET', `/accounts/${address}`)).body.balance);

  /** A real bridge deposit (approve + vault deposit on the chain), credited once confirmed. */
  async function fund(address: string, amount: bigint): Promise<void> {
    const depositor = new Wallet(chain.accounts[1]!, provider);
    const asDepositor = attachContracts(contracts.addresses, depositor);
    await (await asDepositor.token.approve(contracts.addresses.vault, amount, gas)).wait();
    await (await asDepositor.vault.deposit(amount, address, gas)).wait();
    await chain.mine(2);
    await waitFor(`the bank to credit ${amount} to ${address}`, async () => (await balanceOf(address)) === amount, 20_000, 100);
  }

  it('refuses a transfer signature replayed as a withdrawal (EBADSIGNATURE): the payer loses once, no token leaves the vault', async () => {
    const payer = Wallet.createRandom();
    const accomplice = Wallet.createRandom().address;
    await fund(payer.address, dcc(10));
    // One signed transfer: same fields as a withdrawal request (from, to, amount, idempotencyKey, expiresAt).
    const fields: WithdrawalRequest = { from: payer.address, to: accomplice, amount: dcc(4).toString(), idempotencyKey: 'pay-the-accomplice-1', expiresAt: Date.now() + 60_000 };
    const signature = await signRequest(payer, SignedKind.transfer, fields);
    expect((await call(bank.url, 'POST', '/transfers', { transfer: fields, signature })).status).toBe(201);

    const replayed = await call<ErrorBody>(bank.url, 'POST', '/withdrawals', { withdrawal: fields, signature });
    expect(replayed).toMatchObject({ status: 401, body: { ok: false, code: ErrorCode.EBADSIGNATURE } });
    // Nor with the addresses as the attacker may retype them (lowercase): one form, the one signed.
    const retyped = await call<ErrorBody>(bank.url, 'POST', '/withdrawals', { withdrawal: { ...fields, to: accomplice.toLowerCase() }, signature });
    expect(retyped.body.code).toBe(ErrorCode.EBADSIGNATURE);
    // And a withdrawal's signature is no transfer either.
    const withdrawalSignature = await signRequest(payer, SignedKind.withdrawal, { ...fields, idempotencyKey: 'pay-the-accomplice-2' });
    const asTransfer = await call<ErrorBody>(bank.url, 'POST', '/transfers', { transfer: { ...fields, idempotencyKey: 'pay-the-accomplice-2' }, signature: withdrawalSignature });
    expect(asTransfer).toMatchObject({ status: 401, body: { code: ErrorCode.EBADSIGNATURE } });

    await chain.mine(3);
    expect(await balanceOf(payer.address)).toBe(dcc(6));
    expect(await balanceOf(accomplice)).toBe(dcc(4));
    expect(await contracts.token.balanceOf(accomplice)).toBe(0n);

    // The endpoint is live: the payer's own withdrawal, signed as one, is taken and paid on chain.
    const own: WithdrawalRequest = { ...fields, to: Wallet.createRandom().address, amount: dcc(1).toString(), idempotencyKey: 'own-withdrawal-1' };
    const taken = await call<Withdrawal>(bank.url, 'POST', '/withdrawals', { withdrawal: own, signature: await signRequest(payer, SignedKind.withdrawal, own) });
    expect(taken.status).toBe(202);
    await waitFor('the withdrawal to be paid on chain', async () => {
      await chain.mine(1);
      return (await contracts.token.balanceOf(own.to)) === dcc(1);
    }, 20_000, 200);
    expect(await balanceOf(payer.address)).toBe(dcc(5));
    expect(await contracts.token.balanceOf(accomplice)).toBe(0n);
  }, 60_000);

  it('answers EUNAUTHORIZED (401) on holds and payments without the token or with another, and moves nothing', async () => {
    const owner = Wallet.createRandom();
    await fund(owner.address, dcc(3));
    const hold = { idempotencyKey: 'hold-for-a-job-1', account: owner.address, amount: dcc(2).toString(), reference: 'j_0123456789abcdef', expiresAt: Date.now() + 60_000 };
    const created = await call<{ holdId: string }>(bank.url, 'POST', '/holds', hold, TOKEN);
    expect(created.status).toBe(201);
    const holdId = created.body.holdId;
    const thief = Wallet.createRandom().address;
    const attempts: Array<[string, string, unknown]> = [
      ['POST', '/holds', { ...hold, idempotencyKey: 'thief-hold-0001' }],
      ['GET', `/holds/${holdId}`, undefined],
      ['POST', `/holds/${holdId}/payments`, { idempotencyKey: 'thief-pay-0001', payments: [{ key: 'thief:0', to: thief, amount: dcc(2).toString() }] }],
      ['POST', `/holds/${holdId}/increase`, { idempotencyKey: 'thief-inc-0001', amount: '1' }],
      ['POST', `/holds/${holdId}/release`, { idempotencyKey: 'thief-release-1' }],
    ];
    for (const token of [null, '', 'wrong', 'dev-service-token', 'commune-dev-service-token-public-insecure', TOKEN.slice(0, -1), `${TOKEN}x`]) {
      for (const [method, path, body] of attempts) {
        const reply = await call<ErrorBody>(bank.url, method, path, body, token);
        expect([token, method, path, reply.status, reply.body.code]).toEqual([token, method, path, 401, ErrorCode.EUNAUTHORIZED]);
      }
    }
    expect(await balanceOf(thief)).toBe(0n);
    expect(await balanceOf(owner.address)).toBe(dcc(1));
    expect((await call(bank.url, 'GET', `/holds/${holdId}`, undefined, TOKEN)).body).toMatchObject({ remaining: dcc(2).toString(), posted: '0', status: 'held' });
  }, 60_000);

  it('refuses to start without a secret token: none, too short, or the public development token outside dev mode', async () => {
    const extra = isolatedEnvironment();
    extraEnvs.push(extra);
    const none = await refusedStart({ ...extra, BANK_SERVICE_TOKEN: undefined, BANK_DEV_MODE: undefined });
    expect(none.code).toBe(1);
    expect(none.output).toContain('BANK_SERVICE_TOKEN is not set');
    const short = await refusedStart({ ...extra, BANK_SERVICE_TOKEN: 'dev-service-token', BANK_DEV_MODE: undefined });
    expect(short.code).toBe(1);
    expect(short.output).toContain('at least 32');
    const publicToken = await refusedStart({ ...extra, BANK_SERVICE_TOKEN: 'commune-dev-service-token-public-insecure', BANK_DEV_MODE: undefined });
    expect(publicToken.code).toBe(1);
    expect(publicToken.output).toContain('public development token');
  }, 60_000);

  it('listens on loopback by default; with BANK_DEV_MODE=1 it takes the public token and says so loudly', async () => {
    const extra = isolatedEnvironment();
    extraEnvs.push(extra);
    const devBank = await spawnBank({ ...extra, HOST: undefined, BANK_SERVICE_TOKEN: undefined, BANK_DEV_MODE: '1', LOG_LEVEL: 'warn' });
    try {
      const addresses = listeningAddresses(devBank.port);
      expect(addresses.length).toBeGreaterThan(0);
      // 0100007F is 127.0.0.1 in /proc/net/tcp; never 00000000 (every interface) nor an IPv6 wildcard.
      expect(addresses.every((address) => address === '0100007F')).toBe(true);
      expect(devBank.output()).toContain('BANK_DEV_MODE=1');
      expect(devBank.output()).toContain('PUBLIC development token');
      const hold = { idempotencyKey: 'dev-hold-00001', account: Wallet.createRandom().address, amount: '1', reference: 'j_0123456789abcdef', expiresAt: Date.now() + 60_000 };
      // The dev token opens the service endpoints (here ENOFUNDS: the account is empty); no token still does not.
      expect((await call<ErrorBody>(devBank.url, 'POST', '/holds', hold, 'commune-dev-service-token-public-insecure')).body.code).toBe(ErrorCode.ENOFUNDS);
      expect((await call<ErrorBody>(devBank.url, 'POST', '/holds', hold)).status).toBe(401);
    } finally {
      await devBank.stop();
    }
  }, 60_000);

  it('answers internal failures with EBANK and a fixed message: no stack, no SQL, no driver text', async () => {
    // A real internal failure: the ledger's idempotency table disappears under the running bank.
    const database = new pg.Client({ connectionString: env.DATABASE_URL });
    await database.connect();
    try {
      await database.query(`ALTER TABLE "${env.DATABASE_SCHEMA}".idempotency_keys RENAME TO idempotency_keys_gone`);
      const owner = Wallet.createRandom();
      const hold = { idempotencyKey: 'hold-after-the-table-left', account: owner.address, amount: '1', reference: 'j_0123456789abcdef', expiresAt: Date.now() + 60_000 };
      const transfer = { from: owner.address, to: Wallet.createRandom().address, amount: '1', idempotencyKey: 'transfer-after-the-table-left', expiresAt: Date.now() + 60_000 };
      const replies = [
        await call<ErrorBody>(bank.url, 'POST', '/holds', hold, TOKEN),
        await call<ErrorBody>(bank.url, 'POST', '/transfers', { transfer, signature: await signRequest(owner, SignedKind.transfer, transfer) }),
      ];
      for (const reply of replies) {
        expect(reply.status).toBe(500);
        expect(reply.body).toEqual({ ok: false, code: ErrorCode.EBANK, message: 'internal error (logged by the service)' });
        expect(reply.text).not.toMatch(leaks);
      }
      // Malformed and too deep bodies: named codes, nothing of the service's insides.
      const malformed = await call<ErrorBody>(bank.url, 'POST', '/transfers', '{"transfer": {"from": ');
      expect(malformed).toMatchObject({ status: 400, body: { ok: false, code: ErrorCode.EINVAL } });
      expect(malformed.text).not.toMatch(leaks);
      const deep = await call<ErrorBody>(bank.url, 'POST', '/transfers', `{"transfer":${'['.repeat(5000)}${']'.repeat(5000)},"signature":"0x00"}`);
      expect(deep).toMatchObject({ status: 400, body: { code: ErrorCode.ETOODEEP } });
      expect(deep.text).not.toMatch(leaks);
    } finally {
      await database.query(`ALTER TABLE "${env.DATABASE_SCHEMA}".idempotency_keys_gone RENAME TO idempotency_keys`).catch(() => undefined);
      await database.end();
    }
    expect(bank.child.exitCode).toBeNull();
    expect((await call(bank.url, 'GET', '/health')).status).toBe(200);
  }, 60_000);
});
