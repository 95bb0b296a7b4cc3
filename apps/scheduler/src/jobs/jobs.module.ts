import { Module } from '@nestjs/common';
import { AuthModule } from '../auth/auth.module.js';
import { LeasingModule } from '../dispatch/leasing.module.js';
import { PaymentsModule } from '../payments/payments.module.js';
import { ClientGateway } from './client.gateway.js';
import { JobEvents } from './job-events.js';
import { JobsController } from './jobs.controller.js';
import { JobsRepository } from './jobs.repository.js';
import { JobsService } from './jobs.service.js';

@Module({
  imports: [LeasingModule, AuthModule, PaymentsModule],
  controllers: [JobsController],
  providers: [JobsRepository, JobsService, JobEvents, ClientGateway],
  exports: [JobsRepository, JobsService, JobEvents],
})
export class JobsModule {}
