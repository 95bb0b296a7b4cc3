import { Controller, Get } from '@nestjs/common';
import type { WorkValueQuote } from '@commune/protocol';
import { MarketService } from './market.service.js';

/** REST: GET /market/value -> a signed WorkValueQuote (public: a price is no secret). */
@Controller('market')
export class MarketController {
  constructor(private readonly market: MarketService) {}

  @Get('value')
  async value(): Promise<WorkValueQuote> {
    return this.market.quote();
  }
}
