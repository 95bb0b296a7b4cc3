import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { JsonRpcProvider, Wallet } from 'ethers';
import { attachContracts } from '@commune/chain';
import { freePort, repoRoot } from '../support/processes.js';

/** What `pnpm start` relies on to be restartable: its supervisor and its dev chain's data dir. */

interface Supervisor {
  run(label: string, args: string[], env?: Record<string, string>): { starts: number; child: ChildProcess | null };
  stop(): Promise<unknown>;
}
type CreateSupervisor = (options: Record<string, unknown>) => Supervisor;

const waitUntil = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

describe('pnpm start supervisor (scripts/supervisor.mjs)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'commune-supervisor-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('restarts a child that exits while the others keep running, and stops them all', async () => {
    const { createSupervisor } = (await import(join(repoRoot, 'scripts/supervisor.mjs'))) as { createSupervisor: CreateSupervisor };
    // A child that crashes on its first two starts and then stays up; a steady one beside it.
    const counter = join(dir, 'starts');
    writeFileSync(join(dir, 'flaky.mjs'), `import { existsSync, readFileSync, writeFileSync } from 'node:fs';
const n = existsSync(${JSON.stringify(counter)}) ? Number(readFileSync(${JSON.stringify(counter)}, 'utf8')) + 1 : 1;
writeFileSync(${JSON.stringify(counter)}, String(n));
console.log('start', n);
if (n <= 2) process.exit(3);
setInterval(() => {}, 1000);\n`);
    writeFileSync(join(dir, 'steady.mjs'), `console.log('steady up'); setInterval(() => {}, 1000);\n`);
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _encoding, done) => (lines.push(...String(chunk).split('\n').filter(Boolean)), done()) });
    const supervisor = createSupervisor({ cwd: dir, stdout: sink, stderr: sink, firstBackoffMs: 50, maxBackoffMs: 200 });
    const steady = supervisor.run('steady', [join(dir, 'steady.mjs')]);
    const flaky = supervisor.run('flaky', [join(dir, 'flaky.mjs')]);
    try {
      await waitUntil('the flaky child to be up on its third start', () => lines.some((line) => line.includes('flaky     | start 3')), 15_000);
      expect(flaky.starts).toBe(3);
      expect(lines.filter((line) => /flaky exited \(3\); restarting it in/.test(line))).toHaveLength(2);
      expect(steady.starts).toBe(1);
      expect(steady.child!.exitCode).toBeNull();
      // A child killed from outside (as an OOM kill would) comes back too.
      const pid = flaky.child!.pid!;
      process.kill(pid, 'SIGKILL');
      await waitUntil('the killed child to be started again', () => flaky.starts === 4 && flaky.child!.pid !== pid, 15_000);
    } finally {
      await supervisor.stop();
    }
    const stopped = (child: ChildProcess | null): boolean => child !== null && (child.exitCode !== null || child.signalCode !== null);
    expect(stopped(steady.child) && stopped(flaky.child)).toBe(true);
    // Stopping is not a crash: nothing is started again.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(flaky.starts).toBe(4);
  }, 40_000);
});

describe('the dev chain with --data-dir', () => {
  const dir = mkdtempSync(join(tmpdir(), 'commune-chain-'));
  let chain: ChildProcess | null = null;
  afterEach(() => chain?.kill('SIGKILL'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Starts the dev chain CLI on `port` and resolves with the config it writes once it is ready. */
  async function startChain(port: number, fund: string): Promise<{ token: string; vault: string; rpcUrl: string }> {
    const out = join(dir, 'chain.json');
    rmSync(out, { force: true });
    chain = spawn(process.execPath, ['libs/chain/dist/local-chain.js', '--port', String(port), '--out', out, '--fund', fund, '--data-dir', join(dir, 'data')], {
      cwd: repoRoot,
      stdio: 'ignore',
    });
    await waitUntil('the dev chain to write its config', () => existsSync(out), 60_000);
    return JSON.parse(readFileSync(out, 'utf8'));
  }

  async function stopChain(): Promise<void> {
    const exited = new Promise((resolve) => chain!.once('exit', resolve));
    chain!.kill('SIGINT');
    await exited;
    chain = null;
  }

  it('goes on after a restart with the same contracts, blocks and balances, minting nothing twice', async () => {
    const port = await freePort();
    const holder = Wallet.createRandom().address;
    const first = await startChain(port, holder);
    let provider = new JsonRpcProvider(first.rpcUrl, undefined, { staticNetwork: true });
    const balanceBefore = await attachContracts(first, provider).token.balanceOf(holder);
    const heightBefore = await provider.getBlockNumber();
    expect(balanceBefore).toBeGreaterThan(0n);
    provider.destroy();
    await stopChain();

    const second = await startChain(port, holder);
    provider = new JsonRpcProvider(second.rpcUrl, undefined, { staticNetwork: true });
    try {
      expect({ token: second.token, vault: second.vault }).toEqual({ token: first.token, vault: first.vault });
      expect(await provider.getBlockNumber()).toBe(heightBefore);
      expect(await attachContracts(second, provider).token.balanceOf(holder)).toBe(balanceBefore);
    } finally {
      provider.destroy();
    }
  }, 120_000);
});
