import { Inject, Injectable, Logger } from '@nestjs/common';
import { ZeroAddress } from 'ethers';
import { CommuneError, ErrorCode, isCommuneError, SignedKind, WithdrawalRequestSchema, type Withdrawal } from '@commune/protocol';
import { BANK_ENV, type BankEnv } from '../config/env.js';
import { verifiedSignedBody } from '../http/signed-body.js';
import { BridgeChain } from './bridge-chain.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BridgeQueue } from './bridge.queue.js';
import { BridgeRepository } from './bridge.repository.js';
import { BRIDGE_LEDGER, type BridgeLedger } from './domain/bridge-ledger.js';
import {
  assertSameRequest,
  newWithdrawalId,
  requestHashOf,
  toWithdrawalReply,
  withdrawalKeys,
  withdrawalHoldExpiry,
  withdrawalReference,
  WithdrawalIdPattern,
} from './domain/withdrawal.js';

/** The withdrawal a payer signs (SignedKind.withdrawal), exactly: unknown fields are refused. */
export const SignedWithdrawalPayloadSchema = WithdrawalRequestSchema.strict();

/** The longest hold the ledger's reserve() accepts. */
export const maxHoldLifetimeMs = (env: BankEnv): number => Math.max(env.MAX_HOLD_LIFETIME_MS, env.HOLD_DEFAULT_TTL_MS);

/**
 * Takes withdrawal requests: checks the signature and expiry, stores the request, reserves the
 * amount on the ledger (a hold) and hands it to the sender (withdrawal-sender.service.ts).
 * The request is stored before the hold is taken, so a bank that stops in between finds it and
 * finishes the reservation; a retry with the same idempotency key gets the same withdrawal.
 */
@Injectable()
export class WithdrawalsService {
  private readonly logger = new Logger(WithdrawalsService.name);

  constructor(
    @Inject(BANK_ENV) private readonly env: BankEnv,
    @Inject(BRIDGE_LEDGER) private readonly ledger: BridgeLedger,
    private readonly chain: BridgeChain,
    private readonly repository: BridgeRepository,
    private readonly queue: BridgeQueue,
    private readonly metrics: BridgeMetrics,
  ) {}

  /**
   * POST /withdrawals, the body as it came: bounded, parsed strictly, signed by `from` as a
   * SignedKind.withdrawal request over the withdrawal exactly as sent, not expired (at most
   * MAX_TRANSFER_LIFETIME_MS ahead); see verifiedSignedBody.
   */
  async request(body: unknown, now = Date.now()): Promise<Withdrawal> {
    const { payload: request, signature } = await verifiedSignedBody(SignedKind.withdrawal, 'withdrawal', SignedWithdrawalPayloadSchema, body, this.env.MAX_TRANSFER_LIFETIME_MS, now);
    const requestHash = requestHashOf(request);
    const existing = await this.repository.withdrawalByKey(request.from, request.idempotencyKey);
    if (existing) {
      assertSameRequest(existing, requestHash);
      return toWithdrawalReply(existing);
    }
    if (!this.chain.enabled) throw new CommuneError(ErrorCode.ECHAIN, 'the Ethereum bridge is not configured on this bank');
    if (BigInt(request.amount) === 0n) throw new CommuneError(ErrorCode.EINVAL, 'a withdrawal moves a positive amount');
    if (request.to === ZeroAddress) throw new CommuneError(ErrorCode.EINVAL, 'tokens cannot be withdrawn to the zero address');
    const stored = await this.repository.insertWithdrawal({ withdrawalId: newWithdrawalId(), ...request, requestHash, signature, createdAt: new Date(now) });
    if (!stored) {
      // The same key arrived twice at once: the other request stored it first.
      const winner = await this.repository.withdrawalByKey(request.from, request.idempotencyKey);
      if (!winner) throw new Error('a withdrawal stored under this key has vanished');
      assertSameRequest(winner, requestHash);
      return toWithdrawalReply(winner);
    }
    let hold;
    try {
      hold = await this.ledger.reserve({
        idempotencyKey: withdrawalKeys(stored.withdrawalId).reserve,
        account: request.from,
        amount: request.amount,
        reference: withdrawalReference(stored.withdrawalId),
        expiresAt: withdrawalHoldExpiry(stored.createdAt, maxHoldLifetimeMs(this.env)),
      });
    } catch (error) {
      // The ledger refused (nothing reserved): forget the request, so a retry starts afresh. Any
      // other failure leaves it stored; the sender finishes the reservation.
      if (isCommuneError(error)) await this.repository.deleteUnfundedWithdrawal(stored.withdrawalId);
      throw error;
    }
    const funded = await this.repository.updateWithdrawal(stored.withdrawalId, { holdId: hold.holdId });
    this.metrics.withdrawals.inc({ outcome: 'requested' });
    this.logger.log(`withdrawal ${funded.withdrawalId}: ${request.amount} from ${request.from} to ${request.to}, hold ${hold.holdId}`);
    await this.queue.sendWithdrawalsNow().catch((error: Error) => this.logger.warn(`could not wake the sender (it runs on its schedule anyway): ${error.message}`));
    return toWithdrawalReply(funded);
  }

  async get(withdrawalId: string): Promise<Withdrawal> {
    const normalised = withdrawalId.toLowerCase();
    const record = WithdrawalIdPattern.test(normalised) ? await this.repository.withdrawal(normalised) : null;
    if (!record) throw new CommuneError(ErrorCode.ENOTFOUND, `no withdrawal ${withdrawalId}`);
    return toWithdrawalReply(record);
  }
}
