import { Inject, Injectable, Logger } from '@nestjs/common';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';
import { BridgeChain } from './bridge-chain.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BridgeRepository } from './bridge.repository.js';
import { judgeChain, type ChainIdentity, type LegacyState, type RecordedChain } from './domain/chain-identity.js';

/** The two tasks of the bridge; each runs under a Postgres advisory lock of this name (BridgeRepository.exclusively). */
export type BridgeTask = 'deposits' | 'withdrawals';

/**
 * Makes sure the chain the node answers for is the chain the bridge's state is about, before the
 * deposit watcher scans or the withdrawal sender sends (domain/chain-identity.ts decides). The
 * first time, it records the chain (chain id, genesis block hash, vault); later it compares. A new
 * dev chain (BRIDGE_DEV_CHAIN) resets the chain-derived state once, with one warning; any other
 * new chain stops the bridge, with one error, until the node is the right chain again.
 *
 * Whatever changes the recorded state is done holding both tasks' locks (the caller holds its own,
 * this takes the other's if it is free), so neither task ever runs on half a change; when the
 * other task is busy the change waits for the next run.
 */
@Injectable()
export class ChainIdentityGuard {
  private readonly logger = new Logger(ChainIdentityGuard.name);
  /** Why the bridge stands still, as last reported (each reason is logged once, not every run). */
  private haltedBecause: string | null = null;

  constructor(
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
    private readonly chain: BridgeChain,
    private readonly repository: BridgeRepository,
    private readonly metrics: BridgeMetrics,
  ) {}

  /**
   * The recorded chain when the node is that chain (recorded or reset first if need be), or null
   * when `holding`'s task must not act this run: another chain that is not a declared dev chain
   * (the bridge is halted), or a change to make while the other task runs.
   */
  async verify(holding: BridgeTask): Promise<RecordedChain | null> {
    const node = await this.chain.identity();
    const current: ChainIdentity = { ...node, vault: this.chain.vaultAddress };
    const recorded = await this.repository.recordedChain();
    if (recorded && recorded.chainId === current.chainId && recorded.genesisHash === current.genesisHash && recorded.vault === current.vault) {
      this.resume();
      return recorded;
    }
    // Never record a chain the configuration rules out (another chain id than BRIDGE_CHAIN_ID, no
    // vault at its address): fixing the RPC URL later would then look like a new chain.
    if (recorded === null) await this.chain.chainId();
    const outcome = await this.repository.exclusively(holding === 'deposits' ? 'withdrawals' : 'deposits', () => this.settle(current));
    return outcome.ran ? outcome.value : null;
  }

  /** Under both locks: judge again (another replica may have settled it meanwhile) and act on the verdict. */
  private async settle(current: ChainIdentity): Promise<RecordedChain | null> {
    const recorded = await this.repository.recordedChain();
    const legacy = recorded === null ? await this.legacyState() : { kind: 'none' as const };
    const verdict = judgeChain(recorded, current, this.settings.devChain, legacy);
    switch (verdict.kind) {
      case 'same':
        break;
      case 'record':
        await this.repository.recordChain(current, verdict.depositKeys, verdict.adoptLegacy);
        this.logger.log(`bridge state recorded as chain ${current.chainId} with genesis ${current.genesisHash}, vault ${current.vault} (deposit keys: ${verdict.depositKeys})`);
        break;
      case 'new-vault':
        await this.repository.recordVault(current.vault);
        this.logger.warn(`the bridge now watches vault ${current.vault} (was ${recorded!.vault}) on the same chain; it reads the new vault from its start block`);
        break;
      case 'reset': {
        const { cursors, withdrawals } = await this.repository.resetForNewChain(current, verdict.reason);
        this.chain.forgetVerification();
        this.metrics.devChainResets.inc();
        this.logger.warn(
          `a new dev chain (BRIDGE_DEV_CHAIN): ${verdict.reason}. The bridge has reset its state about the old chain: ` +
            `${cursors} deposit cursor(s) dropped (deposits are read again from block ${this.chain.startBlock} of the new chain), ` +
            `${withdrawals} open withdrawal(s) signed for the old chain will be signed again for the new one. ` +
            `Ledger balances and holds stay as they are; deposits on the new chain are credited from now on.`,
        );
        break;
      }
      case 'halt':
        this.halt(verdict.reason);
        return null;
    }
    this.resume();
    return this.repository.recordedChain();
  }

  private async legacyState(): Promise<LegacyState> {
    const block = await this.repository.legacyFinalBlock();
    if (!block) return { kind: 'none' };
    const hash = await this.chain.blockHash(block.blockNumber);
    return { kind: 'block', blockNumber: block.blockNumber, stillCanonical: hash !== null && hash.toLowerCase() === block.blockHash.toLowerCase() };
  }

  private halt(reason: string): void {
    this.metrics.halted.set(1);
    if (this.haltedBecause === reason) return;
    this.haltedBecause = reason;
    this.logger.error(
      `the Ethereum bridge has stopped: ${reason}. Nothing is credited or sent until the node is that chain again. ` +
        `If this is a dev chain started afresh, set BRIDGE_DEV_CHAIN=1 and the bridge resets its state about the old chain; ` +
        `to move a production bank to another chain on purpose, see apps/bank/src/bridge/README.md ("Which chain").`,
    );
  }

  private resume(): void {
    if (this.haltedBecause === null) return;
    this.haltedBecause = null;
    this.metrics.halted.set(0);
    this.logger.log('the node is the bridge\'s chain again: the Ethereum bridge goes on');
  }
}
