import { Module } from '@nestjs/common';
import { MarketController } from './market.controller.js';
import { MarketService } from './market.service.js';

/** The price of work: signed market-value quotes (spec compute.getMarketValue). */
@Module({ controllers: [MarketController], providers: [MarketService], exports: [MarketService] })
export class MarketModule {}
