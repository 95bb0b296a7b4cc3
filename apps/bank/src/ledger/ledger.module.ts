import { Module } from '@nestjs/common';
import { AccountsController } from './accounts.controller.js';
import { HoldExpiryConsumer } from './hold-expiry.consumer.js';
import { HoldExpiryQueue } from './hold-expiry.queue.js';
import { HoldsController } from './holds.controller.js';
import { LedgerRepository } from './ledger.repository.js';
import { LedgerService } from './ledger.service.js';
import { TransfersController } from './transfers.controller.js';

/** The ledger: accounts, transfers, holds, payments. Exports LedgerService (the bridge builds on it). */
@Module({
  controllers: [AccountsController, TransfersController, HoldsController],
  providers: [LedgerRepository, LedgerService, HoldExpiryQueue, HoldExpiryConsumer],
  exports: [LedgerService],
})
export class LedgerModule {}
