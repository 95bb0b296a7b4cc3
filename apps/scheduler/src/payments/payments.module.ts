import { Module } from '@nestjs/common';
import { LeasingModule } from '../dispatch/leasing.module.js';
import { BankClient } from './bank.client.js';
import { PaymentsRepository } from './payments.repository.js';
import { PaymentsService } from './payments.service.js';
import { SliceTimesRepository } from './slice-times.repository.js';

/** Escrow, slice prices and settlement with the bank (apps/bank). */
@Module({ imports: [LeasingModule], providers: [BankClient, PaymentsRepository, PaymentsService, SliceTimesRepository], exports: [PaymentsService] })
export class PaymentsModule {}
