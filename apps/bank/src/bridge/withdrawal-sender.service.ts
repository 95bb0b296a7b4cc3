import { Inject, Injectable, Logger } from '@nestjs/common';
import { ErrorCode, isCommuneError } from '@commune/protocol';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { BRIDGE_SETTINGS, type BridgeSettings } from './bridge-env.js';
import { BridgeChain } from './bridge-chain.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BridgeRepository, type WithdrawalPatch } from './bridge.repository.js';
import { ChainIdentityGuard } from './chain-identity.service.js';
import { BRIDGE_LEDGER, type BridgeLedger } from './domain/bridge-ledger.js';
import { maxHoldLifetimeMs } from './withdrawals.service.js';
import {
  decideWithdrawalStep,
  withdrawalHoldExpiry,
  withdrawalKeys,
  withdrawalReference,
  type ChainView,
  type WithdrawalRecord,
  type WithdrawalStep,
} from './domain/withdrawal.js';

/** A request stored this recently may still be reserving in its HTTP handler: the sender leaves it alone. */
const RESERVE_GRACE_MS = 10_000;
/** Steps taken for one withdrawal in one pass (e.g. sign+broadcast, then the next pass looks again). */
const MAX_STEPS_PER_WITHDRAWAL = 4;

export interface SenderReport {
  open: number;
  steps: Array<{ withdrawalId: string; step: WithdrawalStep['kind'] }>;
}

/**
 * The one sender of withdrawal transactions (a Postgres advisory lock makes it one across bank
 * replicas). Each pass reads the chain once, then advances every open withdrawal, oldest first,
 * by the steps decideWithdrawalStep (domain/withdrawal.ts) chooses. Nonces are explicit: the next
 * one is the chain's pending count or one above the highest nonce an open withdrawal holds,
 * whichever is larger; a signed transaction is stored before it is broadcast, so after a restart
 * it is broadcast again byte for byte (same nonce, same hash) instead of being signed anew.
 */
@Injectable()
export class WithdrawalSender {
  private readonly logger = new Logger(WithdrawalSender.name);

  constructor(
    @Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings,
    @Inject(BANK_ENV) private readonly env: BankEnv,
    @Inject(BRIDGE_LEDGER) private readonly ledger: BridgeLedger,
    private readonly chain: BridgeChain,
    private readonly repository: BridgeRepository,
    private readonly metrics: BridgeMetrics,
    private readonly guard: ChainIdentityGuard,
  ) {}

  /** One pass; null when another process is the sender right now. */
  async run(): Promise<SenderReport | null> {
    const outcome = await this.repository.exclusively('withdrawals', () => this.pass());
    return outcome.ran ? outcome.value : null;
  }

  private async pass(): Promise<SenderReport> {
    const waiting = await this.repository.openWithdrawals(this.settings.maxWithdrawalsPerRun);
    const report: SenderReport = { open: waiting.length, steps: [] };
    if (waiting.length === 0) return report;
    // Nothing is signed or sent for a chain the bridge's state is not about (chain-identity.service.ts).
    if (!(await this.guard.verify('withdrawals'))) return report;
    // Read again: verifying may have just moved to a new dev chain and reset the withdrawals signed for the old one.
    const open = await this.repository.openWithdrawals(this.settings.maxWithdrawalsPerRun);
    await this.chain.chainId();
    const view = await this.readChain();
    // A signed transaction the node has not taken blocks new signatures: a later nonce would wait behind its gap.
    let signingBlocked = false;
    for (const initial of open) {
      let record = initial;
      try {
        for (let step = 0; step < MAX_STEPS_PER_WITHDRAWAL; step++) {
          const decided = await this.decide(record, view);
          if (decided.kind === 'sign' && signingBlocked) break;
          report.steps.push({ withdrawalId: record.withdrawalId, step: decided.kind });
          this.logger.debug(`withdrawal ${record.withdrawalId}: ${decided.kind}${decided.kind === 'wait' || decided.kind === 'release' ? ` (${decided.reason})` : ''}`);
          const next = await this.perform(record, decided, view);
          if (!next) break;
          record = next;
        }
      } catch (error) {
        this.metrics.chainErrors.inc({ task: 'withdrawals' });
        const message = (error as Error).message ?? String(error);
        this.logger.warn(`withdrawal ${record.withdrawalId}: ${message} (tried again next pass)`);
        record = await this.repository.updateWithdrawal(record.withdrawalId, { error: message.slice(0, 500) });
      }
      if (record.status === 'pending' && record.rawTx !== null && !record.accepted) signingBlocked = true;
    }
    return report;
  }

  private async readChain(): Promise<ChainView> {
    const latestBlock = await this.chain.latestBlock();
    const confirmations = this.settings.confirmations;
    const [operatorNonceLatest, operatorNonceFinal] = await Promise.all([
      this.chain.operatorNonce(latestBlock),
      this.chain.operatorNonce(Math.max(0, latestBlock - confirmations)),
    ]);
    return { latestBlock, confirmations, operatorNonceLatest, operatorNonceFinal, now: Date.now() };
  }

  private async decide(record: WithdrawalRecord, view: ChainView): Promise<WithdrawalStep> {
    if (record.status === 'confirmed' || record.status === 'failed') return { kind: 'done' };
    // A reorganisation (up to the confirmations) may re-mine the payment a little below where it was signed.
    const searchFrom = record.signedAtBlock === null ? null : record.signedAtBlock - view.confirmations - 1;
    const paid = await this.chain.payment(record.withdrawalId, view.latestBlock, searchFrom);
    const mayBeUnmined = !paid && record.nonce !== null && record.txHash !== null && view.operatorNonceLatest <= record.nonce;
    const txKnown = mayBeUnmined ? await this.chain.transactionKnown(record.txHash!) : false;
    return decideWithdrawalStep(record, { ...view, now: Date.now() }, { paid, txKnown }, this.settings);
  }

  /** Does one step; returns the updated record to look at again, or null to stop for this pass. */
  private async perform(record: WithdrawalRecord, step: WithdrawalStep, view: ChainView): Promise<WithdrawalRecord | null> {
    const id = record.withdrawalId;
    switch (step.kind) {
      case 'done':
      case 'wait':
        return null;
      case 'reserve':
        return this.reserve(record);
      case 'record-payout':
        return this.update(id, { status: 'sent', accepted: true, txHash: step.txHash || record.txHash, blockNumber: step.blockNumber, error: null }).then(() => null);
      case 'burn': {
        const { transferId } = await this.ledger.burn({ idempotencyKey: withdrawalKeys(id).burn, holdId: record.holdId! });
        await this.update(id, { status: 'confirmed', txHash: step.txHash || record.txHash, blockNumber: step.blockNumber, transferId, rawTx: null, error: null, finished: true });
        this.metrics.withdrawals.inc({ outcome: 'confirmed' });
        this.logger.log(`withdrawal ${id} confirmed: paid in block ${step.blockNumber} (tx ${step.txHash}), hold ${record.holdId} burnt`);
        return null;
      }
      case 'release':
        return this.fail(record, step.reason).then(() => null);
      case 'sign':
        return this.sign(record, view);
      case 'broadcast':
        return this.broadcast(record);
      case 'replace': {
        const signed = await this.chain.signReplacement(record.rawTx!, step.cancel);
        this.logger.warn(`withdrawal ${id}: nonce ${record.nonce} unmined for ${this.settings.resendAfterMs} ms, ${step.cancel ? 'cancelling it' : 'replacing it with higher fees'}`);
        const replaced = await this.update(id, {
          rawTx: signed.rawTx,
          txHash: signed.txHash,
          replacements: record.replacements + 1,
          resends: 0,
          cancelling: record.cancelling || step.cancel,
        });
        return this.broadcast(replaced);
      }
    }
  }

  private update(withdrawalId: string, patch: WithdrawalPatch): Promise<WithdrawalRecord> {
    return this.repository.updateWithdrawal(withdrawalId, patch);
  }

  /** Finishes a reservation the HTTP handler did not (the bank stopped in between). */
  private async reserve(record: WithdrawalRecord): Promise<WithdrawalRecord | null> {
    if (Date.now() - record.createdAt.getTime() < RESERVE_GRACE_MS) return null;
    try {
      const hold = await this.ledger.reserve({
        idempotencyKey: withdrawalKeys(record.withdrawalId).reserve,
        account: record.from,
        amount: record.amount,
        reference: withdrawalReference(record.withdrawalId),
        expiresAt: withdrawalHoldExpiry(record.createdAt, maxHoldLifetimeMs(this.env)),
      });
      return this.update(record.withdrawalId, { holdId: hold.holdId });
    } catch (error) {
      if (!isCommuneError(error)) throw error;
      await this.update(record.withdrawalId, { status: 'failed', error: `the ledger refused the hold: ${error.code} ${error.message}`, finished: true });
      this.metrics.withdrawals.inc({ outcome: 'failed' });
      return null;
    }
  }

  private async sign(record: WithdrawalRecord, view: ChainView): Promise<WithdrawalRecord | null> {
    const amount = BigInt(record.amount);
    const preflight = await this.chain.preflight(record.to, amount, record.withdrawalId);
    if (!preflight.ok) {
      await this.fail(record, `the vault refused the withdrawal: ${preflight.reason}`);
      return null;
    }
    const [pendingNonce, highestOpen] = await Promise.all([this.chain.operatorNonce('pending'), this.repository.highestOpenNonce()]);
    const nonce = Math.max(pendingNonce, view.operatorNonceLatest, highestOpen === null ? 0 : highestOpen + 1);
    const signed = await this.chain.signWithdrawal({ to: record.to, amount, withdrawalId: record.withdrawalId, nonce, gasLimit: preflight.gasLimit });
    // Stored before it leaves: whatever happens next, this exact transaction is what gets sent again.
    const stored = await this.update(record.withdrawalId, {
      nonce,
      signedAtBlock: record.signedAtBlock ?? view.latestBlock,
      rawTx: signed.rawTx,
      txHash: signed.txHash,
      accepted: false,
      rejections: 0,
      replacements: 0,
      resends: 0,
      cancelling: false,
      lastBroadcastAt: null,
    });
    return this.broadcast(stored);
  }

  private async broadcast(record: WithdrawalRecord): Promise<WithdrawalRecord | null> {
    const outcome = await this.chain.broadcast(record.rawTx!);
    const now = new Date();
    if (outcome.kind === 'accepted' || (outcome.kind === 'rejected' && (await this.chain.transactionKnown(record.txHash!)))) {
      if (record.status !== 'sent') this.metrics.withdrawals.inc({ outcome: 'sent' });
      await this.update(record.withdrawalId, {
        status: 'sent',
        accepted: true,
        rejections: 0,
        resends: record.accepted ? record.resends + 1 : 0,
        lastBroadcastAt: now,
        error: null,
      });
      return null;
    }
    if (outcome.kind === 'nonce-used') {
      await this.update(record.withdrawalId, { lastBroadcastAt: now, resends: record.resends + 1, error: `broadcast: ${outcome.message}`.slice(0, 500) });
      return null;
    }
    this.logger.warn(`withdrawal ${record.withdrawalId}: the node refused nonce ${record.nonce}: ${outcome.message}`);
    await this.update(record.withdrawalId, {
      rejections: record.rejections + 1,
      resends: record.accepted ? record.resends + 1 : record.resends,
      lastBroadcastAt: now,
      error: `broadcast refused: ${outcome.message}`.slice(0, 500),
    });
    return null;
  }

  /** Releases the hold (funds back to the account) and marks the withdrawal failed. */
  private async fail(record: WithdrawalRecord, reason: string): Promise<void> {
    if (record.holdId !== null) {
      try {
        await this.ledger.releaseHold({ idempotencyKey: withdrawalKeys(record.withdrawalId).release, holdId: record.holdId });
      } catch (error) {
        // A hold already released (its key's first outcome, or an expiry) has given the funds back too.
        if (!(isCommuneError(error) && error.code === ErrorCode.EHOLDCLOSED)) throw error;
      }
    }
    await this.update(record.withdrawalId, { status: 'failed', error: reason.slice(0, 500), rawTx: null, finished: true });
    this.metrics.withdrawals.inc({ outcome: 'failed' });
    this.logger.warn(`withdrawal ${record.withdrawalId} failed, hold ${record.holdId} released: ${reason}`);
  }
}
