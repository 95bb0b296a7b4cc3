import { Module } from '@nestjs/common';
import { AppliancesModule } from '../appliances/appliances.module.js';
import { AuthModule } from '../auth/auth.module.js';
import { ComputeGroupsModule } from '../compute-groups/compute-groups.module.js';
import { LeasingModule } from '../dispatch/leasing.module.js';
import { PaymentsModule } from '../payments/payments.module.js';
import { StateModule } from '../state/state.module.js';
import { ClientGateway } from './client.gateway.js';
import { JobEventLog } from './job-event-log.js';
import { JobEventReplay } from './job-event-replay.js';
import { JobEvents } from './job-events.js';
import { JobsController } from './jobs.controller.js';
import { JobsRepository } from './jobs.repository.js';
import { JobsService } from './jobs.service.js';

@Module({
  imports: [LeasingModule, AuthModule, ComputeGroupsModule, PaymentsModule, AppliancesModule, StateModule],
  controllers: [JobsController],
  providers: [JobsRepository, JobsService, JobEventLog, JobEvents, JobEventReplay, ClientGateway],
  exports: [JobsRepository, JobsService, JobEvents],
})
export class JobsModule {}
