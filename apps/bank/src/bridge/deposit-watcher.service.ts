import { Inject, Injectable, Logger } from '@nestjs/common';
import type { DepositedEvent } from '@commune/chain';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';
import { BridgeChain } from './bridge-chain.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BridgeRepository } from './bridge.repository.js';
import { BRIDGE_LEDGER, type BridgeLedger } from './domain/bridge-ledger.js';
import { depositCursorName, depositKey, nextScanRange } from './domain/deposits.js';

export interface DepositScanReport {
  /** Blocks read up to (inclusive), or null when nothing new was final. */
  scannedTo: number | null;
  credited: number;
}

/**
 * Credits the ledger for the vault's Deposited events once they are `confirmations` blocks deep.
 * The cursor (bridge_cursors) moves only after every event up to it is credited; a crash between
 * the two re-reads those blocks and the ledger's idempotency key (deposit:<chain>:<tx>:<log>)
 * turns the second credit into a no-op. Events above the final block are never read, so a reorg
 * of unconfirmed blocks needs no undoing.
 */
@Injectable()
export class DepositWatcher {
  private readonly logger = new Logger(DepositWatcher.name);

  constructor(
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
    @Inject(BRIDGE_LEDGER) private readonly ledger: BridgeLedger,
    private readonly chain: BridgeChain,
    private readonly repository: BridgeRepository,
    private readonly metrics: BridgeMetrics,
  ) {}

  /** One run: scans final blocks, at most maxScansPerRun ranges. Skipped while another process runs it. */
  async run(): Promise<DepositScanReport | null> {
    const outcome = await this.repository.exclusively('deposits', () => this.scan());
    return outcome.ran ? outcome.value : null;
  }

  private async scan(): Promise<DepositScanReport> {
    const chainId = await this.chain.chainId();
    const cursorName = depositCursorName(chainId, this.chain.vaultAddress);
    const report: DepositScanReport = { scannedTo: null, credited: 0 };
    await this.checkCursorStillCanonical(cursorName);
    for (let scan = 0; scan < this.settings.maxScansPerRun; scan++) {
      const latestBlock = await this.chain.latestBlock();
      const cursor = await this.repository.cursor(cursorName);
      const range = nextScanRange({
        cursor: cursor?.blockNumber ?? null,
        startBlock: this.chain.startBlock,
        latestBlock,
        confirmations: this.settings.confirmations,
        maxBlocksPerScan: this.settings.maxBlocksPerScan,
      });
      if (!range) break;
      for (const event of await this.chain.deposits(range.fromBlock, range.toBlock)) {
        if (await this.credit(chainId, event)) report.credited++;
      }
      await this.repository.saveCursor(cursorName, { blockNumber: range.toBlock, blockHash: await this.chain.blockHash(range.toBlock) });
      this.metrics.depositCursor.set(range.toBlock);
      report.scannedTo = range.toBlock;
    }
    return report;
  }

  /** Credits one event (at most once); false when it was credited before. */
  private async credit(chainId: number, event: DepositedEvent): Promise<boolean> {
    if (await this.repository.depositRecorded(chainId, event.transactionHash, event.logIndex)) return false;
    const { transferId, created } = await this.ledger.mint({
      idempotencyKey: depositKey(chainId, event.transactionHash, event.logIndex),
      to: event.ledgerAccount,
      amount: event.amount.toString(),
      memo: `deposit ${event.depositId} (tx ${event.transactionHash})`,
    });
    await this.repository.recordDeposit({
      chainId,
      txHash: event.transactionHash,
      logIndex: event.logIndex,
      blockNumber: event.blockNumber,
      blockHash: event.blockHash,
      vault: this.chain.vaultAddress,
      depositId: event.depositId.toString(),
      from: event.from,
      ledgerAccount: event.ledgerAccount,
      amount: event.amount.toString(),
      transferId,
    });
    if (created) {
      this.metrics.depositsCredited.inc();
      this.logger.log(`credited deposit ${event.depositId}: ${event.amount} to ${event.ledgerAccount} (tx ${event.transactionHash}, block ${event.blockNumber})`);
    }
    return created;
  }

  /**
   * A block the watcher read as final should never change. If it did (a reorganisation deeper than
   * the confirmations), nothing is undone: the operator is told, loudly, to raise BRIDGE_CONFIRMATIONS
   * and reconcile the credits of the replaced blocks by hand.
   */
  private async checkCursorStillCanonical(cursorName: string): Promise<void> {
    const cursor = await this.repository.cursor(cursorName);
    if (!cursor?.blockHash) return;
    const hash = await this.chain.blockHash(cursor.blockNumber);
    if (hash === cursor.blockHash) return;
    this.metrics.deepReorgs.inc();
    this.logger.error(
      `block ${cursor.blockNumber} was final (hash ${cursor.blockHash}) but the chain now has ${hash ?? 'no such block'}: a reorganisation deeper than ` +
        `${this.settings.confirmations} confirmations, or a dev chain restarted under the same vault address (then reset the bank's database too). ` +
        `Credits already made stand; check deposits of the replaced blocks.`,
    );
    if (hash !== null) await this.repository.saveCursor(cursorName, { blockNumber: cursor.blockNumber, blockHash: hash });
  }
}
