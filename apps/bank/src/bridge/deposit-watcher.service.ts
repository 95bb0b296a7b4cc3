import { Inject, Injectable, Logger } from '@nestjs/common';
import type { DepositedEvent } from '@commune/chain';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';
import { BridgeChain } from './bridge-chain.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BridgeRepository, type Cursor } from './bridge.repository.js';
import { ChainIdentityGuard } from './chain-identity.service.js';
import { BRIDGE_LEDGER, type BridgeLedger } from './domain/bridge-ledger.js';
import { depositLedgerKey, withOrdinals, type RecordedChain } from './domain/chain-identity.js';
import { depositCursorName, nextScanRange } from './domain/deposits.js';

export interface DepositScanReport {
  /** Blocks read up to (inclusive), or null when nothing new was final. */
  scannedTo: number | null;
  credited: number;
}

/**
 * Credits the ledger for the vault's Deposited events once they are `confirmations` blocks deep.
 *
 * Each deposit is (chain, genesis, transaction, ordinal) (domain/chain-identity.ts): the same
 * deposit mined again in another block after a reorganisation is the same row. Its row is written
 * with its ledger key before the ledger is credited, and the cursor (bridge_cursors) moves only
 * after every event up to it is credited: a bank killed anywhere in between reads those blocks
 * again and credits under the same key, which the ledger turns into a no-op if it was done.
 * Events above the final block are never read, so a reorg of unconfirmed blocks needs no undoing.
 * A reorganisation deeper than the confirmations is reported once and the watcher reads again
 * from the newest block it read that is still on the chain (reanchor below).
 */
@Injectable()
export class DepositWatcher {
  private readonly logger = new Logger(DepositWatcher.name);
  /** The replaced cursor last reported, so one incident is reported once even if re-anchoring has to be tried again. */
  private reportedReorg: string | null = null;

  constructor(
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
    @Inject(BRIDGE_LEDGER) private readonly ledger: BridgeLedger,
    private readonly chain: BridgeChain,
    private readonly repository: BridgeRepository,
    private readonly metrics: BridgeMetrics,
    private readonly guard: ChainIdentityGuard,
  ) {}

  /** One run: scans final blocks, at most maxScansPerRun ranges. Null when another process runs it, or the bridge stands still. */
  async run(): Promise<DepositScanReport | null> {
    const outcome = await this.repository.exclusively('deposits', () => this.scan());
    return outcome.ran ? outcome.value : null;
  }

  private async scan(): Promise<DepositScanReport | null> {
    const recorded = await this.guard.verify('deposits');
    if (!recorded) return null;
    const chainId = await this.chain.chainId();
    const cursorName = depositCursorName(chainId, this.chain.vaultAddress);
    const report: DepositScanReport = { scannedTo: null, credited: 0 };
    await this.reanchorIfReplaced(cursorName);
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
      // The hash is read before the events: if a reorganisation replaces the range meanwhile, the
      // cursor keeps the old hash, and the next run notices and reads the new blocks.
      const toBlockHash = await this.chain.blockHash(range.toBlock);
      for (const { event, ordinal } of withOrdinals(await this.chain.deposits(range.fromBlock, range.toBlock))) {
        if (await this.credit(recorded, chainId, event, ordinal)) report.credited++;
      }
      await this.repository.saveCursor(cursorName, { blockNumber: range.toBlock, blockHash: toBlockHash });
      this.metrics.depositCursor.set(range.toBlock);
      report.scannedTo = range.toBlock;
    }
    return report;
  }

  /**
   * Credits one event at most once; false when it was credited before. A deposit already taken on
   * is credited (again, if the bank stopped in between) with what its row says: the key and the
   * request the ledger saw the first time.
   */
  private async credit(recorded: RecordedChain, chainId: number, event: DepositedEvent, ordinal: number): Promise<boolean> {
    const genesisHash = recorded.genesisHash;
    let row = await this.repository.deposit(chainId, genesisHash, event.transactionHash, ordinal);
    if (row?.transferId) return false;
    row ??= await this.repository.insertDeposit({
      chainId,
      genesisHash,
      txHash: event.transactionHash,
      ordinal,
      logIndex: event.logIndex,
      blockNumber: event.blockNumber,
      blockHash: event.blockHash,
      vault: this.chain.vaultAddress,
      depositId: event.depositId.toString(),
      from: event.from,
      ledgerAccount: event.ledgerAccount,
      amount: event.amount.toString(),
      ledgerKey: depositLedgerKey(recorded.depositKeys, { chainId, genesisHash, transactionHash: event.transactionHash, logIndex: event.logIndex, ordinal }),
    });
    if (row.transferId) return false;
    const { transferId, created } = await this.ledger.mint({
      idempotencyKey: row.ledgerKey,
      to: row.ledgerAccount,
      amount: row.amount,
      // The memo is part of the request the ledger compares under the key: always from the row.
      memo: `deposit ${row.depositId} (tx ${row.txHash})`,
    });
    await this.repository.markDepositCredited(row.ledgerKey, transferId);
    if (created) {
      this.metrics.depositsCredited.inc();
      this.logger.log(`credited deposit ${event.depositId}: ${event.amount} to ${event.ledgerAccount} (tx ${event.transactionHash}, block ${event.blockNumber})`);
    }
    return created;
  }

  /**
   * A block the watcher read as final should never change. If the cursor's block did (a
   * reorganisation deeper than the confirmations, or a node that fell behind), the incident is
   * reported once, nothing is undone (credits already made stand), and the cursor goes back to the
   * newest anchor still on the chain (or before the start block when none is): the blocks after it
   * are read again, deposits mined again there are recognised by their transaction and ordinal and
   * not credited twice, and deposits that only the new blocks hold are credited.
   */
  private async reanchorIfReplaced(cursorName: string): Promise<void> {
    const cursor = await this.repository.cursor(cursorName);
    if (!cursor?.blockHash) return;
    const hash = await this.chain.blockHash(cursor.blockNumber);
    if (hash === cursor.blockHash) return;
    let base: Cursor | null = null;
    for (const anchor of await this.repository.anchorsBelow(cursorName, cursor.blockNumber)) {
      if ((await this.chain.blockHash(anchor.blockNumber)) === anchor.blockHash) {
        base = anchor;
        break;
      }
    }
    const incident = `${cursorName}:${cursor.blockNumber}:${cursor.blockHash}`;
    if (this.reportedReorg !== incident) {
      this.reportedReorg = incident;
      this.metrics.deepReorgs.inc();
      this.logger.error(
        `block ${cursor.blockNumber} was final (hash ${cursor.blockHash}) but the chain now has ${hash ?? 'no such block'}: a reorganisation deeper than ` +
          `${this.settings.confirmations} confirmations (or a node that fell behind). Credits already made stand, including any of deposits the new chain ` +
          `does not have; the watcher reads again from block ${base ? base.blockNumber + 1 : this.chain.startBlock} and credits only deposits it has not credited. ` +
          `Consider raising BRIDGE_CONFIRMATIONS.`,
      );
    }
    await this.repository.rewindCursor(cursorName, base);
  }
}
