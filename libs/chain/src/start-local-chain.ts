import ganache from 'ganache';
import { getAddress } from 'ethers';

export interface LocalChainOptions {
  /** 0 picks a free port. Default 8545. */
  port?: number;
  host?: string;
  /** Default 1337. */
  chainId?: number;
  /** Funded accounts (deterministic wallet), default 10. */
  accountCount?: number;
  /** Ether per account, default 1000. */
  etherPerAccount?: number;
  /**
   * 'instant' (default): every transaction is mined at once in a block of its own; the node answers
   * with the hash first, as a real node does (ganache's strict instamine).
   * 'manual': transactions wait in the pool until mine() (or a block an hour later): what tests
   * that race a background sender against evm_mine need. ganache's miner ignores evm_mine while it
   * is busy instamining (miner.mine() returns at once when busy) and its receipts can fail mid-block,
   * so a test that mines while a service sends loses blocks now and then under 'instant'.
   */
  mining?: 'instant' | 'manual';
  /**
   * A folder where the chain keeps its blocks and state (ganache's database), so that a chain
   * started again on it goes on from where it stopped. Absent: the chain lives in memory only.
   */
  dbPath?: string;
}

export interface LocalChain {
  url: string;
  chainId: number;
  /** Private keys of the funded accounts, deterministic across runs (account 0 first). */
  accounts: string[];
  /** Their addresses, same order. */
  addresses: string[];
  /** Raw JSON-RPC to the in-process node (no HTTP), for test controls. */
  rpc<T = unknown>(method: string, params?: unknown[]): Promise<T>;
  /** Mines `blocks` blocks (empty unless transactions wait in the pool): the chain ends at least `blocks` higher. */
  mine(blocks?: number): Promise<void>;
  blockNumber(): Promise<number>;
  /** evm_snapshot: an id to revert to (a revert consumes the snapshot). */
  snapshot(): Promise<string>;
  /** evm_revert: drops every block after the snapshot, as a reorg would. */
  revert(snapshotId: string): Promise<void>;
  /** Sets an account's ether balance (wei). */
  setBalance(address: string, wei: bigint): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts ganache 7.9.2 in this process with a deterministic wallet (the same keys every run) and
 * chain id 1337, mining each transaction at once (or, with `mining: 'manual'`, when told to).
 * Offline; ~0.5 s. Providers waiting for receipts should poll often (connectProvider's
 * pollingIntervalMs), since a receipt exists a moment after the hash is returned.
 */
/** How long mine() keeps asking a busy ganache miner for its blocks. */
const mineTimeoutMs = 30_000;

export async function startLocalChain(options: LocalChainOptions = {}): Promise<LocalChain> {
  const chainId = options.chainId ?? 1337;
  const host = options.host ?? '127.0.0.1';
  const server = ganache.server({
    wallet: { deterministic: true, totalAccounts: options.accountCount ?? 10, defaultBalance: options.etherPerAccount ?? 1000 },
    chain: { chainId, networkId: chainId },
    logging: { quiet: true },
    miner: options.mining === 'manual' ? { blockTime: 3600 } : { instamine: 'strict' },
    ...(options.dbPath ? { database: { dbPath: options.dbPath } } : {}),
  });
  await server.listen(options.port ?? 8545, host);
  const provider = server.provider;
  const initial = await provider.getInitialAccounts();
  const addresses: string[] = [];
  const accounts: string[] = [];
  for (const [address, account] of Object.entries(initial)) {
    addresses.push(getAddress(address));
    accounts.push(account.secretKey);
  }
  const rpc = async <T>(method: string, params: unknown[] = []): Promise<T> =>
    (await provider.request({ method, params } as Parameters<typeof provider.request>[0])) as T;
  const blockNumber = async (): Promise<number> => Number(BigInt(await rpc<string>('eth_blockNumber')));
  const port = server.address().port;
  let stopped = false;
  return {
    url: `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`,
    chainId,
    accounts,
    addresses,
    rpc,
    async mine(blocks = 1) {
      // ganache's miner ignores evm_mine while it is busy mining a transaction that just arrived
      // (miner.mine() returns at once when busy), and it can stay busy for seconds: ask again, a
      // little later each time, until the chain is `blocks` higher than it was.
      const target = (await blockNumber()) + blocks;
      const deadline = Date.now() + mineTimeoutMs;
      for (let pauseMs = 0; ; pauseMs = Math.min(200, pauseMs * 2 + 10)) {
        const height = await blockNumber();
        if (height >= target) return;
        if (Date.now() > deadline) throw new Error(`evm_mine: still at block ${height} after ${mineTimeoutMs} ms, wanted ${target}`);
        await rpc('evm_mine', [{ blocks: target - height }]);
        if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    },
    blockNumber,
    snapshot: () => rpc<string>('evm_snapshot'),
    async revert(snapshotId: string) {
      const reverted = await rpc<boolean>('evm_revert', [snapshotId]);
      if (!reverted) throw new Error(`evm_revert(${snapshotId}) refused`);
    },
    async setBalance(address: string, wei: bigint) {
      await rpc('evm_setAccountBalance', [getAddress(address), '0x' + wei.toString(16)]);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.close();
    },
  };
}
