import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Wallet, ZeroAddress, id, parseUnits, type JsonRpcProvider } from 'ethers';
import { artifactsDir, loadArtifact } from './artifacts.js';
import { deployContracts, attachContracts, queryDeposits, queryWithdrawals, revertReason, type BridgeContracts } from './contracts.js';
import { connectProvider } from './provider.js';
import { startLocalChain, type LocalChain } from './start-local-chain.js';

const packageRoot = fileURLToPath(new URL('..', import.meta.url));
const dcc = (whole: string | number) => parseUnits(String(whole), 18);

/** The contract error an ethers call failed with, or a failure of the test when it did not fail. */
async function revertOf(promise: Promise<unknown>): Promise<string | null> {
  try {
    await promise;
  } catch (error) {
    return revertReason(error);
  }
  throw new Error('expected the call to revert, it succeeded');
}

describe('contract build', () => {
  it('compiles the sources with solc (shanghai, optimizer) to the artifacts the package ships', () => {
    const out = mkdtempSync(join(tmpdir(), 'commune-artifacts-'));
    try {
      const result = spawnSync(process.execPath, [join(packageRoot, 'scripts/compile.mjs'), '--out', out], { encoding: 'utf8' });
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      for (const name of ['DCCToken', 'BridgeVault'] as const) {
        const fresh = JSON.parse(readFileSync(join(out, `${name}.json`), 'utf8'));
        expect(fresh.compiler.evmVersion).toBe('shanghai');
        expect(fresh.compiler.optimizer.enabled).toBe(true);
        expect(fresh.bytecode).toMatch(/^0x[0-9a-f]{200,}$/);
        // dist/artifacts must be current with contracts/*.sol (the build step regenerates them).
        expect(loadArtifact(name).bytecode).toBe(fresh.bytecode);
        expect(loadArtifact(name).abi).toEqual(fresh.abi);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('finds the artifacts from src/ and dist/ alike', () => {
    expect(artifactsDir.endsWith(join('libs', 'chain', 'dist', 'artifacts') + '/')).toBe(true);
  });
});

describe('DCCToken and BridgeVault on a local chain', () => {
  let chain: LocalChain;
  let provider: JsonRpcProvider;
  let owner: Wallet;
  let alice: Wallet;
  let bob: Wallet;
  let contracts: BridgeContracts;

  beforeAll(async () => {
    chain = await startLocalChain({ port: 0 });
    provider = connectProvider(chain.url, { chainId: chain.chainId, pollingIntervalMs: 20 });
    [owner, alice, bob] = chain.accounts.slice(0, 3).map((key) => new Wallet(key, provider));
    contracts = await deployContracts(owner);
    await (await contracts.token.mint(alice.address, dcc(1000))).wait();
  }, 30_000);
  afterAll(async () => {
    provider?.destroy();
    await chain?.stop();
  });

  const asAlice = () => attachContracts(contracts.addresses, alice);
  const asBob = () => attachContracts(contracts.addresses, bob);

  it('starts a deterministic chain with chain id 1337 and funded accounts', async () => {
    expect(chain.chainId).toBe(1337);
    expect((await provider.getNetwork()).chainId).toBe(1337n);
    expect(chain.addresses[0]).toBe('0x90F8bf6A479f320ead074411a4B0e7944Ea8c9C1');
    expect(await provider.getBalance(chain.addresses[1])).toBeGreaterThan(0n);
  });

  it('deploys the token (DCC, 18 decimals) and the vault operated by the deployer', async () => {
    const { token, vault, addresses } = contracts;
    expect(await token.name()).toBe('Distributed Compute Credit');
    expect(await token.symbol()).toBe('DCC');
    expect(await token.decimals()).toBe(18n);
    expect(await token.owner()).toBe(owner.address);
    expect(await vault.token()).toBe(addresses.token);
    expect(await vault.operator()).toBe(owner.address);
  });

  it('transfers move balances and emit Transfer', async () => {
    const { token } = asAlice();
    const before = await token.balanceOf(bob.address);
    const receipt = await (await token.transfer(bob.address, dcc(5))).wait();
    expect(await token.balanceOf(bob.address)).toBe(before + dcc(5));
    const transfer = receipt!.logs.map((log) => token.interface.parseLog(log)).find((event) => event?.name === 'Transfer');
    expect(transfer?.args.toArray()).toEqual([alice.address, bob.address, dcc(5)]);
  });

  it('refuses a transfer beyond the balance, to the zero address, and a mint by anyone but the owner', async () => {
    const { token } = asBob();
    const balance = await token.balanceOf(bob.address);
    expect(await revertOf(token.transfer(alice.address, balance + 1n))).toBe('InsufficientBalance');
    expect(await revertOf(token.transfer(ZeroAddress, 1n))).toBe('ZeroAddress');
    expect(await revertOf(token.mint(bob.address, 1n))).toBe('NotOwner');
    expect(await token.balanceOf(bob.address)).toBe(balance);
  });

  it('transferFrom spends the allowance, refuses beyond it, and leaves an unlimited allowance alone', async () => {
    const alicesToken = asAlice().token;
    const bobsToken = asBob().token;
    expect(await revertOf(bobsToken.transferFrom(alice.address, bob.address, 1n))).toBe('InsufficientAllowance');
    await (await alicesToken.approve(bob.address, dcc(3))).wait();
    await (await bobsToken.transferFrom(alice.address, bob.address, dcc(2))).wait();
    expect(await alicesToken.allowance(alice.address, bob.address)).toBe(dcc(1));
    expect(await revertOf(bobsToken.transferFrom(alice.address, bob.address, dcc(2)))).toBe('InsufficientAllowance');
    const unlimited = 2n ** 256n - 1n;
    await (await alicesToken.approve(bob.address, unlimited)).wait();
    await (await bobsToken.transferFrom(alice.address, bob.address, dcc(2))).wait();
    expect(await alicesToken.allowance(alice.address, bob.address)).toBe(unlimited);
    await (await alicesToken.approve(bob.address, 0n)).wait();
  });

  it('a deposit pulls the approved tokens into the vault and emits Deposited for the ledger account', async () => {
    const { token, vault, addresses } = asAlice();
    const ledgerAccount = Wallet.createRandom().address;
    const vaultBefore = await token.balanceOf(addresses.vault);
    const firstId = await vault.depositCount();
    await (await token.approve(addresses.vault, dcc(10))).wait();
    const receipt = (await (await vault.deposit(dcc(10), ledgerAccount)).wait())!;
    expect(await token.balanceOf(addresses.vault)).toBe(vaultBefore + dcc(10));
    const events = await queryDeposits(provider, addresses.vault, receipt.blockNumber, receipt.blockNumber);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      from: alice.address,
      ledgerAccount,
      amount: dcc(10),
      depositId: firstId,
      blockNumber: receipt.blockNumber,
      blockHash: receipt.blockHash,
      transactionHash: receipt.hash,
    });
    expect(await vault.depositCount()).toBe(firstId + 1n);
  });

  it('refuses a deposit without allowance, of zero, or for the zero account', async () => {
    const { vault } = asBob();
    const ledgerAccount = Wallet.createRandom().address;
    expect(await revertOf(vault.deposit(dcc(1), ledgerAccount))).toBe('InsufficientAllowance');
    expect(await revertOf(vault.deposit(0n, ledgerAccount))).toBe('ZeroAmount');
    expect(await revertOf(vault.deposit(1n, ZeroAddress))).toBe('ZeroAddress');
  });

  it('the operator withdraws once per withdrawal id', async () => {
    const { token, vault, addresses } = contracts;
    const to = Wallet.createRandom().address;
    const withdrawalId = id('withdrawal-once');
    const receipt = (await (await vault.withdraw(to, dcc(4), withdrawalId)).wait())!;
    expect(await token.balanceOf(to)).toBe(dcc(4));
    expect(await vault.withdrawn(withdrawalId)).toBe(true);
    expect(await revertOf(vault.withdraw(to, dcc(4), withdrawalId))).toBe('AlreadyWithdrawn');
    expect(await token.balanceOf(to)).toBe(dcc(4));
    const events = await queryWithdrawals(provider, addresses.vault, withdrawalId);
    expect(events).toEqual([expect.objectContaining({ to, amount: dcc(4), withdrawalId, transactionHash: receipt.hash })]);
  });

  it('refuses a withdrawal by anyone but the operator, and one the vault cannot cover', async () => {
    const to = Wallet.createRandom().address;
    expect(await revertOf(asBob().vault.withdraw(to, 1n, id('not-operator')))).toBe('NotOperator');
    const vaultBalance = await contracts.token.balanceOf(contracts.addresses.vault);
    expect(await revertOf(contracts.vault.withdraw(to, vaultBalance + 1n, id('too-much')))).toBe('InsufficientBalance');
    expect(await contracts.vault.withdrawn(id('too-much'))).toBe(false);
  });

  it('only the owner changes the operator', async () => {
    expect(await revertOf(asBob().vault.setOperator(bob.address))).toBe('NotOwner');
    await (await contracts.vault.setOperator(bob.address)).wait();
    expect(await contracts.vault.operator()).toBe(bob.address);
    await (await asBob().vault.withdraw(bob.address, 1n, id('bob-operates'))).wait();
    await (await contracts.vault.setOperator(owner.address)).wait();
  });

  it('mines blocks and reverts to a snapshot (the reorgs bridge tests make)', async () => {
    const start = await chain.blockNumber();
    const snapshot = await chain.snapshot();
    await chain.mine(3);
    expect(await chain.blockNumber()).toBe(start + 3);
    await chain.revert(snapshot);
    expect(await chain.blockNumber()).toBe(start);
  });
});
