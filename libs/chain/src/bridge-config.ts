import { renameSync, writeFileSync } from 'node:fs';

/**
 * The file `local-chain --out <file>` writes and the bank reads (BRIDGE_CONFIG_FILE): where the
 * chain is, the two contracts, and the operator key the bank sends withdrawals with. Dev chains
 * only: a real deployment passes the key through its secret store, not a file.
 */
export interface BridgeChainConfig {
  rpcUrl: string;
  chainId: number;
  token: string;
  vault: string;
  operatorKey: string;
  /** The block the vault was deployed in: the deposit watcher need not look before it. */
  startBlock: number;
}

/** Writes the config atomically (a reader never sees half a file), readable by its owner only. */
export function writeBridgeConfig(file: string, config: BridgeChainConfig): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  renameSync(temporary, file);
}
