import { z } from 'zod';
import { AddressSchema, JobIdSchema } from './schemas.js';

/**
 * The bank's API bodies (apps/bank). Amounts are integers in the smallest unit (18 decimals, as
 * the DCC ERC-20 token) carried as decimal strings; the bank stores them as NUMERIC and does
 * arithmetic with bignumber.js. Every state change carries a client-generated idempotency key:
 * a retry with the same key gets the first outcome.
 */
export const DCC_DECIMALS = 18;

/** Integer amount in the smallest unit, as a decimal string (no sign, no fraction). */
export const UnitsSchema = z.string().regex(/^\d{1,78}$/, 'an integer amount in the smallest unit (18 decimals)');
export const IdempotencyKeySchema = z.string().min(8).max(200).regex(/^[A-Za-z0-9_:.-]+$/);

export const AccountSchema = z.object({ address: AddressSchema, balance: UnitsSchema });
export type Account = z.infer<typeof AccountSchema>;

export const LedgerEntrySchema = z.object({
  id: z.string(),
  transferId: z.string(),
  /** Signed change of this account's balance, smallest unit. */
  amount: z.string().regex(/^-?\d+$/),
  balanceAfter: UnitsSchema,
  kind: z.enum(['transfer', 'hold', 'payment', 'release', 'fee', 'deposit', 'withdrawal']),
  counterparty: z.string().nullable(),
  memo: z.string().nullable(),
  createdAt: z.string(),
});
export type LedgerEntry = z.infer<typeof LedgerEntrySchema>;
export const HistoryPageSchema = z.object({ address: AddressSchema, entries: z.array(LedgerEntrySchema), nextBefore: z.string().nullable() });
export type HistoryPage = z.infer<typeof HistoryPageSchema>;

/** A transfer the payer signs (canonical JSON, EIP-191) with a nonce (the idempotency key) and an expiry. */
export const TransferSchema = z.object({
  from: AddressSchema,
  to: AddressSchema,
  amount: UnitsSchema,
  memo: z.string().max(200).optional(),
  idempotencyKey: IdempotencyKeySchema,
  expiresAt: z.number().int(),
});
export type Transfer = z.infer<typeof TransferSchema>;
export const SignedTransferSchema = z.object({ transfer: TransferSchema, signature: z.string().regex(/^0x[0-9a-fA-F]+$/) });
export type SignedTransfer = z.infer<typeof SignedTransferSchema>;
export const TransferReceiptSchema = z.object({ transferId: z.string(), from: AddressSchema, to: AddressSchema, amount: UnitsSchema, createdAt: z.string() });
export type TransferReceipt = z.infer<typeof TransferReceiptSchema>;

// ---- holds (escrow): service-authenticated, used by the scheduler

export const HoldStatusSchema = z.enum(['held', 'released', 'expired']);
export const CreateHoldSchema = z.object({
  idempotencyKey: IdempotencyKeySchema,
  /** The payer (the job's payment account). */
  account: AddressSchema,
  amount: UnitsSchema,
  /** What the hold is for, e.g. the job id; a hold whose job is gone expires by itself. */
  reference: JobIdSchema,
  expiresAt: z.number().int(),
});
export type CreateHold = z.infer<typeof CreateHoldSchema>;
export const HoldSchema = z.object({
  holdId: z.string(),
  account: AddressSchema,
  reference: z.string(),
  amount: UnitsSchema,
  /** Still reserved: amount minus posted payments, zero once released. */
  remaining: UnitsSchema,
  posted: UnitsSchema,
  status: HoldStatusSchema,
  expiresAt: z.string(),
});
export type Hold = z.infer<typeof HoldSchema>;
export const IncreaseHoldSchema = z.object({ idempotencyKey: IdempotencyKeySchema, amount: UnitsSchema, expiresAt: z.number().int().optional() });
export type IncreaseHold = z.infer<typeof IncreaseHoldSchema>;

/** One worker payment out of a hold; `key` (job id + slice) makes it happen at most once. */
export const PaymentSchema = z.object({ key: IdempotencyKeySchema, to: AddressSchema, amount: UnitsSchema });
export type Payment = z.infer<typeof PaymentSchema>;
export const PostPaymentsSchema = z.object({
  idempotencyKey: IdempotencyKeySchema,
  payments: z.array(PaymentSchema).min(1).max(10_000),
  /** The operator's fee per payment, smallest unit, paid to the bank's fee account. */
  feePerPayment: UnitsSchema.default('0'),
});
export type PostPayments = z.infer<typeof PostPaymentsSchema>;
export const PostPaymentsReplySchema = z.object({ hold: HoldSchema, paid: z.number().int(), alreadyPaid: z.number().int() });
export type PostPaymentsReply = z.infer<typeof PostPaymentsReplySchema>;
export const ReleaseHoldSchema = z.object({ idempotencyKey: IdempotencyKeySchema });

// ---- bridge

export const WithdrawalRequestSchema = z.object({
  from: AddressSchema,
  /** Ethereum address that receives the ERC-20 tokens. */
  to: AddressSchema,
  amount: UnitsSchema,
  idempotencyKey: IdempotencyKeySchema,
  expiresAt: z.number().int(),
});
export type WithdrawalRequest = z.infer<typeof WithdrawalRequestSchema>;
export const SignedWithdrawalSchema = z.object({ withdrawal: WithdrawalRequestSchema, signature: z.string().regex(/^0x[0-9a-fA-F]+$/) });
export const WithdrawalSchema = z.object({
  withdrawalId: z.string(),
  from: AddressSchema,
  to: AddressSchema,
  amount: UnitsSchema,
  status: z.enum(['pending', 'sent', 'confirmed', 'failed']),
  txHash: z.string().nullable(),
});
export type Withdrawal = z.infer<typeof WithdrawalSchema>;

/** Error body of every bank endpoint: a code from ErrorCode and a message. */
export const BankErrorSchema = z.object({ ok: z.literal(false), code: z.string(), message: z.string() });
