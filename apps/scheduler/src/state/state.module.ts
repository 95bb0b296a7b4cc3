import { Module } from '@nestjs/common';
import { StateEvents } from './state-events.js';
import { StateClientGateway, StateWorkerGateway } from './state.gateway.js';
import { StateRepository } from './state.repository.js';
import { StateService } from './state.service.js';

/**
 * spec "Shared State" and "Synchronization": job.state / worker.state, arbitrated here. Needs
 * only Redis and Postgres (global modules), so jobs/ and dispatch/ can import it.
 */
@Module({
  providers: [StateRepository, StateService, StateEvents, StateClientGateway, StateWorkerGateway],
  exports: [StateService],
})
export class StateModule {}
