import { AccountSchema } from '@commune/protocol';

/**
 * The worker's view of its earnings account at the bank: GET {bank}/accounts/{earnings}, at most
 * every `minIntervalMs` (10 s), shown as the balance in DCC and its change since the worker
 * started. The bank is only read; a bank that cannot be reached is reported, never fatal.
 */

export interface EarningsOptions {
  /** The bank's base URL. */
  bank: string;
  /** The earnings address (checksummed). */
  address: string;
  /** Least time between two requests to the bank; default 10 s. */
  minIntervalMs?: number;
  /** How long one request may take; default 5 s. */
  timeoutMs?: number;
  /** For tests. */
  fetch?: typeof fetch;
  now?: () => number;
}

export interface EarningsSnapshot {
  /** Available balance, DCC decimal string. */
  balance: string;
  /** Balance now minus the first balance read, DCC decimal string with a sign ('+0.25', '-1', '+0'). */
  change: string;
  /** Smallest units, for JSON logs. */
  balanceUnits: string;
  changeUnits: string;
}

/** What the supervisor's summary line needs of it. */
export interface EarningsSource {
  /** The earnings address and the bank's URL, for log lines. */
  readonly address: string;
  readonly bank: string;
  /** The latest balance and change (undefined before the first successful read), refreshed first when older than the interval. */
  refresh(): Promise<EarningsSnapshot | undefined>;
  /** The latest reading without asking the bank. */
  latest(): EarningsSnapshot | undefined;
  /** Why the last read failed; undefined after a success. */
  readonly lastError?: string | undefined;
}

const decimals = 18n;
const unit = 10n ** decimals;

/** Smallest units (an integer, maybe negative) as a DCC decimal string: 1500000000000000000n → '1.5'. */
export function unitsToDcc(units: bigint): string {
  const negative = units < 0n;
  const magnitude = negative ? -units : units;
  const whole = magnitude / unit;
  const fraction = (magnitude % unit).toString().padStart(Number(decimals), '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}

export class Earnings implements EarningsSource {
  readonly address: string;
  readonly bank: string;
  private readonly url: string;
  private readonly minIntervalMs: number;
  private readonly timeoutMs: number;
  private readonly fetch: typeof fetch;
  private readonly now: () => number;
  private baseline: bigint | undefined;
  private current: bigint | undefined;
  private lastAttempt = -Infinity;
  private inFlight: Promise<EarningsSnapshot | undefined> | undefined;
  /** Why the last read failed; undefined after a success. */
  lastError: string | undefined;

  constructor(options: EarningsOptions) {
    this.address = options.address;
    this.bank = options.bank.replace(/\/+$/, '');
    this.url = `${this.bank}/accounts/${encodeURIComponent(options.address)}`;
    this.minIntervalMs = options.minIntervalMs ?? 10_000;
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.now = options.now ?? (() => Date.now());
  }

  latest(): EarningsSnapshot | undefined {
    if (this.current === undefined || this.baseline === undefined) return undefined;
    const change = this.current - this.baseline;
    return {
      balance: unitsToDcc(this.current),
      change: `${change >= 0n ? '+' : ''}${unitsToDcc(change)}`,
      balanceUnits: this.current.toString(),
      changeUnits: change.toString(),
    };
  }

  refresh(): Promise<EarningsSnapshot | undefined> {
    if (this.inFlight) return this.inFlight;
    if (this.now() - this.lastAttempt < this.minIntervalMs) return Promise.resolve(this.latest());
    this.lastAttempt = this.now();
    this.inFlight = this.read().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async read(): Promise<EarningsSnapshot | undefined> {
    try {
      const response = await this.fetch(this.url, { headers: { accept: 'application/json' }, signal: AbortSignal.timeout(this.timeoutMs) });
      const body: unknown = await response.json().catch(() => undefined);
      if (!response.ok) {
        const detail = typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? `: ${(body as { message: string }).message}` : '';
        throw new Error(`the bank answered ${response.status}${detail}`);
      }
      const account = AccountSchema.safeParse(body);
      if (!account.success) throw new Error('the bank sent a malformed account');
      this.current = BigInt(account.data.balance);
      this.baseline ??= this.current;
      this.lastError = undefined;
    } catch (error) {
      this.lastError = error instanceof Error ? error.message : String(error);
    }
    return this.latest();
  }
}

/** 'earnings 1.5 DCC (+0.25 since start)', or why the bank could not be read. For log lines. */
export function describeEarnings(source: EarningsSource): string {
  const snapshot = source.latest();
  if (snapshot === undefined) return `earnings unknown${source.lastError ? ` (${source.lastError})` : ''}`;
  return `earnings ${snapshot.balance} DCC (${snapshot.change} since start)${source.lastError ? ` (stale: ${source.lastError})` : ''}`;
}
