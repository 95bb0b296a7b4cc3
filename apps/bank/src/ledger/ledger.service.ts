import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { z } from 'zod';
import {
  AddressSchema,
  CommuneError,
  ErrorCode,
  hashOf,
  IdempotencyKeySchema,
  isCommuneError,
  SignedKind,
  TransferSchema,
  UnitsSchema,
  type Account,
  type CreateHold,
  type HistoryPage,
  type Hold,
  type IncreaseHold,
  type LedgerEntry,
  type PostPayments,
  type PostPaymentsReply,
  type TransferReceipt,
} from '@commune/protocol';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { Metrics } from '../health/metrics.js';
import { assertHoldOpen, assertHoldUnresolved, checkHoldExpiry, escrowAddressOf, planPayments, toHoldReply, type HoldState } from './domain/holds.js';
import { HoldIdPattern, newLedgerId } from './domain/ids.js';
import { planPosting, simpleLegs, type AccountState, type Leg } from './domain/posting.js';
import { formatUnits, toUnits, ZERO, type Units } from './domain/units.js';
import { verifiedSignedBody } from '../http/signed-body.js';
import { LedgerRepository, type BatchPosting, type HoldRow, type LedgerAudit, type LedgerTransaction, type TransferRecord } from './ledger.repository.js';

/** The account that mints and burns: deposits are bridge -> user, withdrawals user -> bridge. */
export const BRIDGE_ACCOUNT = 'bridge';

/** Default entries per history page. */
export const DEFAULT_HISTORY_PAGE = 50;

const MemoSchema = z.string().max(200);
const ReferenceSchema = z.string().min(1).max(200);

// ---- the bridge's internal API (apps/bank/src/bridge builds on these)

export const MintSchema = z.object({ idempotencyKey: IdempotencyKeySchema, to: AddressSchema, amount: UnitsSchema, memo: MemoSchema.nullish() });
export type Mint = z.input<typeof MintSchema>;
export const ReserveSchema = z.object({
  idempotencyKey: IdempotencyKeySchema,
  account: AddressSchema,
  amount: UnitsSchema,
  reference: ReferenceSchema,
  /** Epoch ms; HOLD_DEFAULT_TTL_MS from now when absent. */
  expiresAt: z.number().int().optional(),
});
export type Reserve = z.input<typeof ReserveSchema>;
export const BurnSchema = z.object({ idempotencyKey: IdempotencyKeySchema, holdId: z.string() });
export type Burn = z.input<typeof BurnSchema>;
export const ResolveHoldSchema = z.object({ idempotencyKey: IdempotencyKeySchema, holdId: z.string() });
export type ResolveHold = z.input<typeof ResolveHoldSchema>;
/** The transfer a payer signs (SignedKind.transfer), exactly: unknown fields are refused. */
export const SignedTransferPayloadSchema = TransferSchema.strict();
/** An unsigned transfer (the signature is checked by submitSignedTransfer before it gets here). */
export const InternalTransferSchema = z.object({ idempotencyKey: IdempotencyKeySchema, from: AddressSchema, to: AddressSchema, amount: UnitsSchema, memo: MemoSchema.nullish() });
export type InternalTransfer = z.input<typeof InternalTransferSchema>;

/** What an idempotent operation returns: its outcome and whether this call made it (false: a retry). */
export interface Outcome<T> {
  value: T;
  created: boolean;
}

/** A transfer waiting for the next batch (group commit, see moveBetweenAccounts). */
interface PendingTransfer {
  from: string;
  to: string;
  fromId: string;
  toId: string;
  amount: Units;
  memo: string | null;
  scope: string;
  key: string;
  requestHash: string;
  reuseCode: ErrorCode;
  resolve(outcome: Outcome<TransferReceipt>): void;
  reject(error: unknown): void;
}

type BatchResult = { outcome: Outcome<TransferReceipt> } | { error: CommuneError };

/**
 * The ledger: double-entry transfers between accounts, holds (escrow) and payments out of them,
 * mint and burn for the bridge. Every state change is one Postgres transaction keyed by its
 * caller's idempotency key; a retry gets the first outcome. See apps/bank/README.md.
 */
@Injectable()
export class LedgerService implements OnApplicationBootstrap {
  private readonly logger = new Logger(LedgerService.name);
  private bridgeAccountId = '';
  private feeAccountId = '';

  constructor(
    private readonly repository: LedgerRepository,
    @Inject(BANK_ENV) private readonly env: BankEnv,
    private readonly metrics: Metrics,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const ids = await this.repository.ensureAccounts([
      { address: BRIDGE_ACCOUNT, kind: 'bridge', allowNegative: true },
      { address: this.env.BANK_FEE_ACCOUNT, kind: 'fee' },
    ]);
    this.bridgeAccountId = ids.get(BRIDGE_ACCOUNT)!;
    this.feeAccountId = ids.get(this.env.BANK_FEE_ACCOUNT)!;
  }

  /** The fee account's address (BANK_FEE_ACCOUNT). */
  get feeAccount(): string {
    return this.env.BANK_FEE_ACCOUNT;
  }

  // ---- reads

  /** Available balance (money in holds is not available). An unknown address has 0. */
  async account(address: string): Promise<Account> {
    const account = await this.repository.findAccount(address);
    return { address, balance: formatUnits(account?.balance ?? ZERO) };
  }

  /** Entries of an account, newest first; `before` is the `nextBefore` of the previous page. */
  async history(address: string, before: string | null, limit = DEFAULT_HISTORY_PAGE): Promise<HistoryPage> {
    const pageSize = Math.min(Math.max(1, limit), this.env.MAX_HISTORY_PAGE);
    const account = await this.repository.findAccount(address);
    if (!account) return { address, entries: [], nextBefore: null };
    const rows = await this.repository.entries(account.id, before, pageSize + 1);
    const page = rows.slice(0, pageSize);
    const entries: LedgerEntry[] = page.map((row) => ({
      id: row.id,
      transferId: row.transferId,
      amount: formatUnits(row.amount),
      balanceAfter: formatUnits(row.balanceAfter),
      kind: row.kind,
      counterparty: row.counterparty,
      memo: row.memo,
      createdAt: row.createdAt.toISOString(),
    }));
    return { address, entries, nextBefore: rows.length > pageSize ? page[page.length - 1]!.id : null };
  }

  async getHold(holdId: string): Promise<Hold> {
    const found = HoldIdPattern.test(holdId) ? await this.repository.findHold(holdId) : null;
    if (!found) throw notFound(holdId);
    return toHoldReply(holdStateOf(found.row, found.remaining));
  }

  /** Consistency check of the whole ledger (tests, operators). */
  audit(): Promise<LedgerAudit> {
    return this.repository.audit();
  }

  // ---- transfers

  /**
   * A signed transfer from POST /transfers, the body as it came: bounded, parsed strictly, and
   * signed by `from` as a SignedKind.transfer request over the transfer exactly as sent (so it is
   * never valid as a withdrawal, nor a withdrawal's signature as a transfer); expiresAt must lie
   * ahead, at most MAX_TRANSFER_LIFETIME_MS. The idempotency key is the nonce: the same signed
   * transfer again gets the first receipt, another transfer under the same key is EREPLAY.
   */
  async submitSignedTransfer(body: unknown): Promise<Outcome<TransferReceipt>> {
    let transfer;
    try {
      ({ payload: transfer } = await verifiedSignedBody(SignedKind.transfer, 'transfer', SignedTransferPayloadSchema, body, this.env.MAX_TRANSFER_LIFETIME_MS));
    } catch (error) {
      if (isCommuneError(error)) this.metrics.refusals.inc({ code: error.code });
      throw error;
    }
    return this.moveBetweenAccounts(
      { idempotencyKey: transfer.idempotencyKey, from: transfer.from, to: transfer.to, amount: transfer.amount, memo: transfer.memo },
      { scope: `transfer:${transfer.from}`, reuseCode: ErrorCode.EREPLAY, expiresAt: transfer.expiresAt },
    );
  }

  /** An unsigned transfer between two accounts (in-process callers; HTTP goes through submitSignedTransfer). */
  async transfer(input: InternalTransfer): Promise<Outcome<TransferReceipt>> {
    const parsed = InternalTransferSchema.parse(input);
    return this.moveBetweenAccounts(parsed, { scope: `transfer:${parsed.from}`, reuseCode: ErrorCode.EKEYREUSED, expiresAt: null });
  }

  private readonly pendingTransfers: PendingTransfer[] = [];
  private transferBatchesInFlight = 0;

  /**
   * Transfers are committed in groups: each waits in a queue, and up to TRANSFER_BATCHES_IN_FLIGHT
   * transactions each take up to MAX_TRANSFERS_PER_BATCH of them (what arrived while the previous
   * ones were busy, so a lone transfer commits at once). Within a batch every transfer is still
   * all or nothing: its key is claimed, its accounts locked, and it is applied in arrival order
   * to the running balances; one the balance does not cover is refused (ENOFUNDS) and leaves no
   * key, the others commit together.
   */
  private async moveBetweenAccounts(
    input: { idempotencyKey: string; from: string; to: string; amount: string; memo?: string | null },
    options: { scope: string; reuseCode: ErrorCode; expiresAt: number | null },
  ): Promise<Outcome<TransferReceipt>> {
    const amount = toUnits(input.amount);
    if (amount.isZero()) throw invalid('a transfer moves a positive amount');
    if (input.from === input.to) throw invalid('a transfer needs two different accounts');
    const memo = input.memo ?? null;
    const ids = await this.repository.ensureAccounts([
      { address: input.from, kind: 'user' },
      { address: input.to, kind: 'user' },
    ]);
    const request = { from: input.from, to: input.to, amount: formatUnits(amount), memo, expiresAt: options.expiresAt };
    if (this.pendingTransfers.length >= this.env.MAX_PENDING_TRANSFERS) {
      this.metrics.refusals.inc({ code: ErrorCode.EUNAVAILABLE });
      throw new CommuneError(ErrorCode.EUNAVAILABLE, `the bank has ${this.pendingTransfers.length} transfers waiting (MAX_PENDING_TRANSFERS); retry later`);
    }
    return new Promise<Outcome<TransferReceipt>>((resolve, reject) => {
      this.pendingTransfers.push({
        from: input.from,
        to: input.to,
        fromId: ids.get(input.from)!,
        toId: ids.get(input.to)!,
        amount,
        memo,
        scope: options.scope,
        key: input.idempotencyKey,
        requestHash: hashOf({ operation: 'transfer', request }),
        reuseCode: options.reuseCode,
        resolve,
        reject,
      });
      this.startTransferBatches();
    });
  }

  private startTransferBatches(): void {
    while (this.transferBatchesInFlight < this.env.TRANSFER_BATCHES_IN_FLIGHT && this.pendingTransfers.length > 0) {
      // Distinct keys per batch; a second request under a key waits for the next batch (where it finds the first's outcome).
      const batch: PendingTransfer[] = [];
      const keys = new Set<string>();
      const later: PendingTransfer[] = [];
      for (const pending of this.pendingTransfers) {
        const id = `${pending.scope}\u0000${pending.key}`;
        if (batch.length >= this.env.MAX_TRANSFERS_PER_BATCH || keys.has(id)) later.push(pending);
        else {
          keys.add(id);
          batch.push(pending);
        }
      }
      this.pendingTransfers.splice(0, this.pendingTransfers.length, ...later);
      this.transferBatchesInFlight++;
      void this.runTransferBatch(batch).finally(() => {
        this.transferBatchesInFlight--;
        this.startTransferBatches();
      });
    }
  }

  private async runTransferBatch(batch: readonly PendingTransfer[]): Promise<void> {
    const stopTimer = this.metrics.transactionSeconds.startTimer({ operation: 'transfer' });
    let results: BatchResult[];
    try {
      results = await this.repository.transaction((tx) => this.postTransferBatch(tx, batch));
    } catch (error) {
      if (isCommuneError(error)) this.metrics.refusals.inc({ code: error.code }, batch.length);
      for (const pending of batch) pending.reject(error);
      return;
    } finally {
      stopTimer();
    }
    batch.forEach((pending, i) => {
      const result = results[i]!;
      if ('error' in result) {
        this.metrics.refusals.inc({ code: result.error.code });
        pending.reject(result.error);
        return;
      }
      if (result.outcome.created) this.metrics.transfers.inc({ kind: 'transfer' });
      else this.metrics.replays.inc();
      pending.resolve(result.outcome);
    });
  }

  /** One batch's transaction (run again from the start after a serialization failure or deadlock). */
  private async postTransferBatch(tx: LedgerTransaction, batch: readonly PendingTransfer[]): Promise<BatchResult[]> {
    const results: BatchResult[] = new Array(batch.length);
    // Each transfer's row and receipt are made up front, so that its key is claimed with the outcome it keeps if it commits.
    const receipts = batch.map((pending) => {
      const transfer = newTransfer('transfer', pending.memo);
      const receipt: TransferReceipt = { transferId: transfer.id, from: pending.from, to: pending.to, amount: formatUnits(pending.amount), createdAt: transfer.createdAt.toISOString() };
      return { transfer, receipt };
    });
    // Keys first, then the accounts of every transfer in the batch (a replay's too: locking more is harmless, and saves a round trip).
    const { existing, accounts: locked } = await tx.claimKeysAndLockAccounts(
      batch.map((pending, i) => ({ scope: pending.scope, key: pending.key, requestHash: pending.requestHash, response: receipts[i]!.receipt })),
      batch.flatMap((pending) => [pending.fromId, pending.toId]),
    );
    const fresh: number[] = [];
    batch.forEach((pending, i) => {
      const claim = existing.get(`${pending.scope}\u0000${pending.key}`);
      if (!claim) fresh.push(i);
      else if (claim.requestHash !== pending.requestHash) {
        results[i] = { error: new CommuneError(pending.reuseCode, `idempotency key ${pending.key} was already used for a different request`) };
      } else results[i] = { outcome: { value: claim.response as TransferReceipt, created: false } };
    });
    if (fresh.length === 0) return results;
    const balances = new Map<string, Units>();
    const current = (id: string): AccountState => {
      const account = locked.get(id)!;
      return { ...account, balance: balances.get(id) ?? account.balance };
    };
    const postings: BatchPosting[] = [];
    const refused: PendingTransfer[] = [];
    for (const i of fresh) {
      const pending = batch[i]!;
      const from = current(pending.fromId);
      const to = current(pending.toId);
      let planned;
      try {
        planned = planPosting(new Map([[from.id, from], [to.id, to]]), simpleLegs(from, to, pending.amount, 'transfer', pending.memo));
      } catch (error) {
        if (!isCommuneError(error)) throw error;
        results[i] = { error };
        refused.push(pending);
        continue;
      }
      for (const [id, balance] of planned.balances) balances.set(id, balance);
      const { transfer, receipt } = receipts[i]!;
      postings.push({ transfer, entries: planned.entries });
      results[i] = { outcome: { value: receipt, created: true } };
    }
    await tx.postBatch(postings, balances, refused);
    return results;
  }

  // ---- holds

  /** POST /holds: reserves `amount` of the account's available balance (ENOFUNDS when it can't). */
  async createHold(body: CreateHold): Promise<Outcome<Hold>> {
    return this.openHold('create-hold', body, this.env.MAX_HOLD_LIFETIME_MS);
  }

  /** Bridge: reserves the amount of a withdrawal (a hold whose reference is any string). */
  async reserve(input: Reserve): Promise<Hold> {
    const parsed = ReserveSchema.parse(input);
    return (await this.openHold('reserve', { ...parsed, expiresAt: parsed.expiresAt ?? null }, Math.max(this.env.MAX_HOLD_LIFETIME_MS, this.env.HOLD_DEFAULT_TTL_MS))).value;
  }

  /** `expiresAt` null: HOLD_DEFAULT_TTL_MS from when the hold is made (a retry's request is still the same). */
  private async openHold(
    scope: string,
    input: { idempotencyKey: string; account: string; amount: string; reference: string; expiresAt: number | null },
    maxLifetimeMs: number,
  ): Promise<Outcome<Hold>> {
    const amount = toUnits(input.amount);
    const ownerId = (await this.repository.ensureAccounts([{ address: input.account, kind: 'user' }])).get(input.account)!;
    const request = { account: input.account, amount: formatUnits(amount), reference: input.reference, expiresAt: input.expiresAt };
    return this.idempotent('open-hold', scope, input.idempotencyKey, request, ErrorCode.EKEYREUSED, async (tx) => {
      // Checked after the key, so that a retry of a hold made a while ago still gets its first outcome.
      const now = Date.now();
      const expiresAt = checkHoldExpiry(input.expiresAt ?? now + this.env.HOLD_DEFAULT_TTL_MS, now, maxLifetimeMs);
      const holdId = newLedgerId('h');
      const escrow = await tx.createEscrowAccount(escrowAddressOf(holdId));
      const accounts = await tx.lockAccounts([ownerId]);
      accounts.set(escrow.id, escrow);
      const owner = accounts.get(ownerId)!;
      const transfer = newTransfer('hold', input.reference);
      const posting = planPosting(accounts, simpleLegs(owner, escrow, amount, 'hold', input.reference));
      await tx.insertHold({ id: holdId, accountId: ownerId, escrowAccountId: escrow.id, reference: input.reference, amount, expiresAt, createdAt: transfer.createdAt });
      const reply = toHoldReply({
        id: holdId,
        accountId: ownerId,
        ownerAddress: owner.address,
        escrowAccountId: escrow.id,
        escrowAddress: escrow.address,
        reference: input.reference,
        amount,
        posted: ZERO,
        remaining: amount,
        status: 'held',
        expiresAt,
      });
      await tx.post(transfer, posting, reply);
      this.metrics.transfers.inc({ kind: 'hold' });
      return reply;
    });
  }

  /** POST /holds/:id/increase: reserves more (re-escrow); may move the expiry. */
  async increaseHold(holdId: string, body: IncreaseHold): Promise<Hold> {
    const amount = toUnits(body.amount);
    const request = { holdId, amount: formatUnits(amount), expiresAt: body.expiresAt ?? null };
    const outcome = await this.idempotent('increase-hold', 'increase-hold', body.idempotencyKey, request, ErrorCode.EKEYREUSED, async (tx) => {
      const now = Date.now();
      const newExpiry = body.expiresAt !== undefined ? checkHoldExpiry(body.expiresAt, now, this.env.MAX_HOLD_LIFETIME_MS) : null;
      const { hold, accounts } = await this.lockHold(tx, holdId, []);
      assertHoldOpen(hold, now);
      const expiresAt = newExpiry ?? hold.expiresAt;
      let remaining = hold.remaining;
      if (!amount.isZero()) {
        const owner = accounts.get(hold.accountId)!;
        const escrow = accounts.get(hold.escrowAccountId)!;
        const transfer = newTransfer('hold', hold.reference);
        const posting = planPosting(accounts, simpleLegs(owner, escrow, amount, 'hold', hold.reference));
        await tx.post(transfer, posting);
        remaining = posting.balances.get(escrow.id)!;
        this.metrics.transfers.inc({ kind: 'hold' });
      }
      const updated: HoldState = { ...hold, amount: hold.amount.plus(amount), remaining, expiresAt };
      await tx.updateHold(holdId, { amount: updated.amount, posted: updated.posted, status: 'held', expiresAt, resolvedAt: null });
      return toHoldReply(updated);
    });
    return outcome.value;
  }

  /**
   * POST /holds/:id/payments: pays each payment whose key was never paid, plus feePerPayment to
   * the fee account, out of the hold. A batch that needs more than remains is refused whole
   * (ENOFUNDS) and changes nothing.
   */
  async postPayments(holdId: string, body: PostPayments): Promise<PostPaymentsReply> {
    if (body.payments.length > this.env.MAX_PAYMENTS_PER_BATCH) throw invalid(`at most ${this.env.MAX_PAYMENTS_PER_BATCH} payments per batch`);
    const fee = toUnits(body.feePerPayment);
    const payments = body.payments.map((payment) => ({ key: payment.key, to: payment.to, amount: formatUnits(toUnits(payment.amount)) }));
    const recipientIds = await this.repository.ensureAccounts([...new Set(payments.map((payment) => payment.to))].map((address) => ({ address, kind: 'user' as const })));
    const request = { holdId, payments, feePerPayment: formatUnits(fee) };
    const outcome = await this.idempotent('post-payments', 'post-payments', body.idempotencyKey, request, ErrorCode.EKEYREUSED, async (tx) => {
      // First occurrence of each key in this batch; its recipient is locked whether or not it was paid before.
      const candidates = new Map<string, (typeof payments)[number]>();
      for (const payment of payments) if (!candidates.has(payment.key)) candidates.set(payment.key, payment);
      const extra = [...new Set([...candidates.values()].map((payment) => recipientIds.get(payment.to)!))];
      if (!fee.isZero()) extra.push(this.feeAccountId);
      const { hold, accounts } = await this.lockHold(tx, holdId, extra, false);
      assertHoldOpen(hold, Date.now());
      const transfer = newTransfer('payment', `payments from hold ${holdId}`);
      const inserted = await tx.claimPayments(
        holdId,
        transfer,
        [...candidates.values()].map((payment) => ({ key: payment.key, recipientId: recipientIds.get(payment.to)!, amount: toUnits(payment.amount), fee })),
      );
      const paidBefore = new Set([...candidates.keys()].filter((key) => !inserted.has(key)));
      const plan = planPayments(hold, payments, fee, paidBefore);
      if (plan.fresh.length === 0) return { hold: toHoldReply(hold), paid: 0, alreadyPaid: plan.alreadyPaid };
      const escrow = accounts.get(hold.escrowAccountId)!;
      const legs: Leg[] = [{ accountId: escrow.id, amount: plan.total.negated(), kind: 'payment', counterparty: null, memo: `${plan.fresh.length} payments` }];
      for (const payment of plan.fresh) {
        legs.push({ accountId: recipientIds.get(payment.to)!, amount: payment.amountUnits, kind: 'payment', counterparty: hold.ownerAddress, memo: payment.key });
      }
      if (!plan.fees.isZero()) legs.push({ accountId: this.feeAccountId, amount: plan.fees, kind: 'fee', counterparty: hold.ownerAddress, memo: `hold ${holdId}` });
      const posting = planPosting(accounts, legs);
      await tx.post(transfer, posting);
      const updated: HoldState = { ...hold, posted: hold.posted.plus(plan.total), remaining: posting.balances.get(escrow.id)! };
      await tx.updateHold(holdId, { amount: updated.amount, posted: updated.posted, status: 'held', expiresAt: updated.expiresAt, resolvedAt: null });
      this.metrics.transfers.inc({ kind: 'payment' });
      this.metrics.payments.inc(plan.fresh.length);
      return { hold: toHoldReply(updated), paid: plan.fresh.length, alreadyPaid: plan.alreadyPaid };
    });
    return outcome.value;
  }

  /** POST /holds/:id/release and the bridge's releaseHold: returns what remains to the account; once. */
  async releaseHold(input: ResolveHold): Promise<Hold> {
    const { idempotencyKey, holdId } = ResolveHoldSchema.parse(input);
    const outcome = await this.idempotent('release-hold', 'release-hold', idempotencyKey, { holdId }, ErrorCode.EKEYREUSED, async (tx) => {
      const { hold, accounts } = await this.lockHold(tx, holdId, []);
      assertHoldUnresolved(hold);
      return toHoldReply(await this.returnRemaining(tx, hold, accounts, 'released'));
    });
    return outcome.value;
  }

  /** Bridge: posts the whole of a hold to the bridge account (a withdrawal) and resolves it. */
  async burn(input: Burn): Promise<{ transferId: string }> {
    const { idempotencyKey, holdId } = BurnSchema.parse(input);
    const outcome = await this.idempotent('burn', 'burn', idempotencyKey, { holdId }, ErrorCode.EKEYREUSED, async (tx) => {
      // Not refused past expiresAt: the tokens may already be on their way; only a resolved hold is final.
      const { hold, accounts } = await this.lockHold(tx, holdId, [this.bridgeAccountId]);
      assertHoldUnresolved(hold);
      const escrow = accounts.get(hold.escrowAccountId)!;
      const bridge = accounts.get(this.bridgeAccountId)!;
      const transfer = newTransfer('withdrawal', hold.reference);
      await tx.post(transfer, planPosting(accounts, simpleLegs(escrow, bridge, hold.remaining, 'withdrawal', hold.reference)));
      const resolvedAt = new Date();
      await tx.updateHold(holdId, { amount: hold.amount, posted: hold.posted.plus(hold.remaining), status: 'released', expiresAt: hold.expiresAt, resolvedAt });
      this.metrics.transfers.inc({ kind: 'withdrawal' });
      return { transferId: transfer.id };
    });
    return outcome.value;
  }

  /** Bridge: credits a deposit (bridge -> `to`). `created` is false when the key was used before. */
  async mint(input: Mint): Promise<{ transferId: string; created: boolean }> {
    const parsed = MintSchema.parse(input);
    const amount = toUnits(parsed.amount);
    if (amount.isZero()) throw invalid('a deposit credits a positive amount');
    const memo = parsed.memo ?? null;
    const toId = (await this.repository.ensureAccounts([{ address: parsed.to, kind: 'user' }])).get(parsed.to)!;
    const request = { to: parsed.to, amount: formatUnits(amount), memo };
    const outcome = await this.idempotent('mint', 'mint', parsed.idempotencyKey, request, ErrorCode.EKEYREUSED, async (tx) => {
      const accounts = await tx.lockAccounts([this.bridgeAccountId, toId]);
      const transfer = newTransfer('deposit', memo);
      const receipt = { transferId: transfer.id };
      await tx.post(transfer, planPosting(accounts, simpleLegs(accounts.get(this.bridgeAccountId)!, accounts.get(toId)!, amount, 'deposit', memo)), receipt);
      this.metrics.transfers.inc({ kind: 'deposit' });
      return receipt;
    });
    return { transferId: outcome.value.transferId, created: outcome.created };
  }

  /**
   * The `expire-holds` job: releases held holds past their expiry back to their accounts (status
   * `expired`). The hold row lock and its status make this at most once, with no key needed.
   */
  async expireDueHolds(now = new Date(), limit = this.env.MAX_EXPIRED_HOLDS_PER_SWEEP): Promise<number> {
    let expired = 0;
    for (const holdId of await this.repository.dueHolds(now, limit)) {
      const done = await this.repository.transaction(async (tx) => {
        const { hold, accounts } = await this.lockHold(tx, holdId, []);
        if (hold.status !== 'held' || hold.expiresAt.getTime() > now.getTime()) return false; // resolved or extended meanwhile
        await this.returnRemaining(tx, hold, accounts, 'expired');
        return true;
      });
      if (done) {
        expired++;
        this.metrics.holdsExpired.inc();
      }
    }
    if (expired > 0) this.logger.log(`${expired} expired holds returned to their accounts`);
    return expired;
  }

  // ---- helpers

  /** Locks a hold, then its owner (unless `withOwner` is false), escrow and `extra` accounts, in id order. */
  private async lockHold(tx: LedgerTransaction, holdId: string, extra: string[], withOwner = true): Promise<{ hold: HoldState; accounts: Map<string, AccountState> }> {
    const row = HoldIdPattern.test(holdId) ? await tx.lockHold(holdId) : null;
    if (!row) throw notFound(holdId);
    const accounts = await tx.lockAccounts([...(withOwner ? [row.accountId] : []), row.escrowAccountId, ...extra]);
    return { hold: holdStateOf(row, accounts.get(row.escrowAccountId)!.balance), accounts };
  }

  private async returnRemaining(tx: LedgerTransaction, hold: HoldState, accounts: Map<string, AccountState>, status: 'released' | 'expired'): Promise<HoldState> {
    if (!hold.remaining.isZero()) {
      const escrow = accounts.get(hold.escrowAccountId)!;
      const owner = accounts.get(hold.accountId)!;
      const transfer = newTransfer('release', hold.reference);
      await tx.post(transfer, planPosting(accounts, simpleLegs(escrow, owner, hold.remaining, 'release', hold.reference)));
      this.metrics.transfers.inc({ kind: 'release' });
    }
    const resolvedAt = new Date();
    await tx.updateHold(hold.id, { amount: hold.amount, posted: hold.posted, status, expiresAt: hold.expiresAt, resolvedAt });
    return { ...hold, remaining: ZERO, status };
  }

  /**
   * Runs a keyed state change in one transaction. The key is claimed first: the same request
   * under a used key gets the stored first outcome; a different one is refused (`reuseCode`).
   * Only outcomes are stored: a refused request (ENOFUNDS, EHOLDCLOSED...) rolls back entirely,
   * key included, so it may be retried once its cause is gone.
   */
  private async idempotent<T>(
    operation: string,
    scope: string,
    key: string,
    request: unknown,
    reuseCode: ErrorCode,
    work: (tx: LedgerTransaction) => Promise<T>,
  ): Promise<Outcome<T>> {
    const requestHash = hashOf({ operation, request });
    const stopTimer = this.metrics.transactionSeconds.startTimer({ operation });
    try {
      const outcome = await this.repository.transaction(async (tx): Promise<Outcome<T>> => {
        const claim = await tx.claimKey(scope, key, requestHash);
        if (!claim.claimed) {
          if (claim.requestHash !== requestHash) {
            throw new CommuneError(reuseCode, `idempotency key ${key} was already used for a different request`);
          }
          return { value: claim.response as T, created: false };
        }
        const value = await work(tx);
        // work may have written it with its last statement (LedgerTransaction.post's outcome)
        if (!tx.outcomeRecorded) await tx.recordOutcome(scope, key, value);
        return { value, created: true };
      });
      if (!outcome.created) this.metrics.replays.inc();
      return outcome;
    } catch (error) {
      if (isCommuneError(error)) this.metrics.refusals.inc({ code: error.code });
      throw error;
    } finally {
      stopTimer();
    }
  }
}

function holdStateOf(row: HoldRow, remaining: Units): HoldState {
  return { ...row, escrowAddress: escrowAddressOf(row.id), remaining };
}

function newTransfer(kind: TransferRecord['kind'], memo: string | null): TransferRecord {
  const createdAt = new Date();
  return { id: newLedgerId('tr', createdAt.getTime()), kind, memo, createdAt };
}

function notFound(holdId: string): CommuneError {
  return new CommuneError(ErrorCode.ENOTFOUND, `no hold ${holdId}`);
}

function invalid(message: string): CommuneError {
  return new CommuneError(ErrorCode.EINVAL, message);
}
