import {
  AddressSchema,
  CommuneError,
  ErrorCode,
  IdempotencyKeySchema,
  newId,
  SignedKind,
  signRequest,
  TransferSchema,
  type LedgerEntry,
} from '@commune/protocol';
import { BankLink, type BankLinkOptions } from './bank.js';
import type { JobSigner } from './job.js';
import { loadKeystore, locateKeystore, type KeystoreWallet } from './keystore.js';
import { toUnits, unitsToDcc } from './money.js';

/**
 * The wallet module: the keystores of this program, and its accounts at the bank. Amounts given
 * and returned are DCC decimal strings ('1.5'); the bank counts smallest units (18 decimals).
 */
export interface CommuneWallet {
  /** The home folder the keystores are in. */
  readonly home: string;
  /** The bank's base URL (init's `bank`). */
  readonly bank: URL;
  /** The payment account: init's keystore, or the default keystore. */
  get(): Promise<JobSigner>;
  /** The payment account's checksummed address. */
  getAddress(): Promise<string>;
  /** Decrypts a keystore: a path, or a name in the home folder (`load('id')` reads `<home>/id.keystore`). */
  load(path: string, passphrase?: string): Promise<KeystoreWallet>;
  /**
   * The available balance of an account (default: the payment account) in DCC, as a decimal
   * string. Money escrowed for jobs (held) is not included. An address the bank never saw has '0'.
   */
  balance(address?: string): Promise<string>;
  /**
   * Moves `amount` DCC from the payment account (or `options.from`, a wallet) to `to`: a
   * transfer (protocol TransferSchema) signed by the payer as a SignedKind.transfer request and
   * posted to the bank. Rejects
   * ENOFUNDS when the payer's available balance does not cover it, EINVAL for a bad address or
   * amount. Retried with the same idempotency key (so at most once) when the bank cannot be
   * reached; pass your own `idempotencyKey` to retry safely across calls.
   */
  transfer(to: string, amount: number | string | bigint | { toFixed(): string }, options?: TransferOptions): Promise<WalletTransferReceipt>;
  /** One page of an account's ledger entries (default: the payment account), newest first; amounts in DCC. */
  history(address?: string, options?: HistoryOptions): Promise<WalletHistoryPage>;
}

export interface TransferOptions {
  /** Shown in both accounts' history; at most 200 characters. */
  memo?: string;
  /** The payer; default the payment account. */
  from?: JobSigner;
  /** The transfer's nonce at the bank (8-200 of A-Z a-z 0-9 _ : . -); default a random one. The same key and transfer again gets the first receipt. */
  idempotencyKey?: string;
}

export interface HistoryOptions {
  /** `nextBefore` of the previous page. */
  before?: string;
  /** Entries per page (the bank's default 50; at most its MAX_HISTORY_PAGE). */
  limit?: number;
}

/** The bank's receipt, with the amount in DCC. */
export interface WalletTransferReceipt {
  transferId: string;
  from: string;
  to: string;
  /** DCC decimal string. */
  amount: string;
  createdAt: string;
}

/** A ledger entry with `amount` (signed) and `balanceAfter` in DCC. */
export type WalletLedgerEntry = LedgerEntry;

export interface WalletHistoryPage {
  address: string;
  entries: WalletLedgerEntry[];
  /** Pass as `before` for the next (older) page; null at the end. */
  nextBefore: string | null;
}

export interface WalletOptions {
  home: string;
  /** The payment account. */
  account: Promise<JobSigner>;
  bank: URL;
  /** Request timeout and (for tests) fetch. */
  bankLink?: BankLinkOptions;
}

/** How long a signed transfer stays valid: the bank accepts at most MAX_TRANSFER_LIFETIME_MS (10 min by default) ahead. */
const transferLifetimeMs = 5 * 60_000;

function addressOf(what: string, value: unknown): string {
  const parsed = AddressSchema.safeParse(value);
  if (!parsed.success) throw new CommuneError(ErrorCode.EINVAL, `${what} must be an Ethereum address, not ${JSON.stringify(value)}`);
  return parsed.data;
}

export function createWallet(options: WalletOptions): CommuneWallet {
  const { home, account } = options;
  const bank = new BankLink(options.bank, options.bankLink);
  const addressOrDefault = async (address: string | undefined, what: string) =>
    address === undefined ? addressOf(what, await (await account).getAddress()) : addressOf(what, address);

  return {
    home,
    bank: options.bank,
    get: () => account,
    getAddress: async () => (await account).getAddress(),
    load: async (path, passphrase = '') => loadKeystore(await locateKeystore(home, path), passphrase),

    async balance(address) {
      const { balance } = await bank.account(await addressOrDefault(address, 'wallet.balance(address)'));
      return unitsToDcc(balance);
    },

    async transfer(to, amount, transferOptions = {}) {
      const units = toUnits('wallet.transfer(to, amount): amount', amount);
      if (units === '0') throw new CommuneError(ErrorCode.EINVAL, 'wallet.transfer(to, amount) needs a positive amount of DCC');
      const payer = transferOptions.from ?? (await account);
      if (typeof payer?.getAddress !== 'function' || typeof payer?.signMessage !== 'function') {
        throw new CommuneError(ErrorCode.EINVAL, 'wallet.transfer: options.from is a wallet (getAddress and signMessage)');
      }
      const key = transferOptions.idempotencyKey ?? newId('t', 24);
      if (!IdempotencyKeySchema.safeParse(key).success) throw new CommuneError(ErrorCode.EINVAL, `wallet.transfer: idempotencyKey ${JSON.stringify(key)} is not 8-200 of A-Z a-z 0-9 _ : . -`);
      const parsed = TransferSchema.safeParse({
        from: addressOf('wallet.transfer: the payer', await payer.getAddress()),
        to: addressOf('wallet.transfer(to, amount): to', to),
        amount: units,
        ...(transferOptions.memo === undefined ? {} : { memo: transferOptions.memo }),
        idempotencyKey: key,
        expiresAt: Date.now() + transferLifetimeMs,
      });
      if (!parsed.success) throw new CommuneError(ErrorCode.EINVAL, `wallet.transfer: ${parsed.error.message}`);
      const transfer = parsed.data;
      // Signed as a transfer (the kind is in the signed text): the bank never takes it as a withdrawal.
      const receipt = await bank.transfer({ transfer, signature: await signRequest(payer, SignedKind.transfer, transfer) });
      return { ...receipt, amount: unitsToDcc(receipt.amount) };
    },

    async history(address, historyOptions = {}) {
      const { before, limit } = historyOptions;
      if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1)) throw new CommuneError(ErrorCode.EINVAL, `wallet.history: limit must be a positive integer, not ${String(limit)}`);
      if (before !== undefined && !/^\d{1,19}$/.test(before)) throw new CommuneError(ErrorCode.EINVAL, `wallet.history: before is a previous page's nextBefore, not ${JSON.stringify(before)}`);
      const page = await bank.history(await addressOrDefault(address, 'wallet.history(address)'), before, limit);
      return {
        address: page.address,
        entries: page.entries.map((entry) => ({ ...entry, amount: unitsToDcc(entry.amount), balanceAfter: unitsToDcc(entry.balanceAfter) })),
        nextBefore: page.nextBefore,
      };
    },
  };
}
