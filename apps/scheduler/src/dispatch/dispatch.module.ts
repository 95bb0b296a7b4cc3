import { Module } from '@nestjs/common';
import { ComputeGroupsModule } from '../compute-groups/compute-groups.module.js';
import { JobsModule } from '../jobs/jobs.module.js';
import { ResultsModule } from '../results/results.module.js';
import { PaymentsModule } from '../payments/payments.module.js';
import { StateModule } from '../state/state.module.js';
import { DispatchService } from './dispatch.service.js';
import { JobCatalog } from './job-catalog.js';
import { LeaseJournalRepository } from './lease-journal.repository.js';
import { LeasingModule } from './leasing.module.js';
import { MaintenanceConsumer } from './maintenance.consumer.js';
import { WorkerGateway } from './worker.gateway.js';

@Module({
  imports: [LeasingModule, ComputeGroupsModule, JobsModule, ResultsModule, PaymentsModule, StateModule],
  providers: [DispatchService, JobCatalog, WorkerGateway, MaintenanceConsumer, LeaseJournalRepository],
})
export class DispatchModule {}
