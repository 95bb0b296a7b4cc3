/**
 * Deposits: the vault's `Deposited` events, credited to the ledger once they are final, i.e.
 * `confirmations` blocks deep. Pure helpers of the watcher.
 */

/**
 * The ledger key deposits had before the bank recorded its chain's identity, and still have on the
 * chain such a bank had already credited deposits on (DepositKeyFormat 'legacy' in
 * chain-identity.ts, where the key is chosen: depositLedgerKey).
 */
export function depositKey(chainId: number, transactionHash: string, logIndex: number): string {
  return `deposit:${chainId}:${transactionHash.toLowerCase()}:${logIndex}`;
}

/** The watcher's cursor name: one per chain and vault. */
export function depositCursorName(chainId: number, vault: string): string {
  return `deposits:${chainId}:${vault.toLowerCase()}`;
}

/**
 * The next block range to scan, or null when nothing new is final. `cursor` is the last block
 * already scanned (null: none yet, start at `startBlock`).
 */
export function nextScanRange(options: {
  cursor: number | null;
  startBlock: number;
  latestBlock: number;
  confirmations: number;
  maxBlocksPerScan: number;
}): { fromBlock: number; toBlock: number } | null {
  const finalBlock = options.latestBlock - options.confirmations;
  const fromBlock = options.cursor === null ? options.startBlock : Math.max(options.cursor + 1, options.startBlock);
  if (finalBlock < fromBlock) return null;
  return { fromBlock, toBlock: Math.min(finalBlock, fromBlock + options.maxBlocksPerScan - 1) };
}
