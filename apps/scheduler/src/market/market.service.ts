import { Inject, Injectable, Logger } from '@nestjs/common';
import { Wallet } from 'ethers';
import { SignedKind, signRequest, type WorkValueQuote } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { workValueAt } from './domain/work-value.js';

/**
 * spec compute.getMarketValue: signed WorkValueQuotes. The key is SCHEDULER_QUOTE_KEY; without it
 * each replica makes one at start (fine for one replica; replicas behind one URL need the same key).
 */
@Injectable()
export class MarketService {
  private readonly logger = new Logger(MarketService.name);
  private readonly key: Wallet;

  constructor(@Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv) {
    if (env.SCHEDULER_QUOTE_KEY) this.key = new Wallet(env.SCHEDULER_QUOTE_KEY);
    else {
      this.key = Wallet.createRandom() as unknown as Wallet;
      this.logger.log(`SCHEDULER_QUOTE_KEY is not set: market quotes are signed by a key made at start (${this.key.address})`);
    }
  }

  get signer(): string {
    return this.key.address;
  }

  async quote(now = Date.now()): Promise<WorkValueQuote> {
    const unsigned = {
      ...workValueAt(this.env.MARKET_RATE_DCC_PER_SECOND),
      currency: 'DCC' as const,
      issuedAt: now,
      quoteExpiry: now + this.env.QUOTE_LIFETIME_MS,
      signer: this.key.address,
    };
    return { ...unsigned, signature: await signRequest(this.key, SignedKind.marketQuote, unsigned) };
  }
}
