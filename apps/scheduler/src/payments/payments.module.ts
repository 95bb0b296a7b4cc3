import { Module } from '@nestjs/common';
import { LeasingModule } from '../dispatch/leasing.module.js';
import { BankClient } from './bank.client.js';
import { PaymentsRepository } from './payments.repository.js';
import { PaymentsService } from './payments.service.js';

/** Escrow, slice prices and settlement with the bank (apps/bank). */
@Module({ imports: [LeasingModule], providers: [BankClient, PaymentsRepository, PaymentsService], exports: [PaymentsService] })
export class PaymentsModule {}
