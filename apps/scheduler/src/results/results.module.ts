import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module.js';
import { LeasingModule } from '../dispatch/leasing.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { PaymentsModule } from '../payments/payments.module.js';
import { ResultQueries } from './result-queries.service.js';
import { ResultsController } from './results.controller.js';
import { ResultsRepository } from './results.repository.js';
import { ResultsService } from './results.service.js';

@Module({
  imports: [LeasingModule, JobsModule, AuthModule, PaymentsModule],
  controllers: [ResultsController],
  providers: [ResultsService, ResultsRepository, ResultQueries],
  exports: [ResultsService],
})
export class ResultsModule {}
