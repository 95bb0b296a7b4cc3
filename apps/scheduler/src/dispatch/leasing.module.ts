import { Module } from '@nestjs/common';
import { LeaseRepository } from './lease.repository.js';
import { MaintenanceQueue } from './maintenance.queue.js';
import { WorkerNotifier } from './worker-notifier.js';

/** Lease state, worker hints and the maintenance queue, shared by job intake, dispatch and results. */
@Module({ providers: [LeaseRepository, WorkerNotifier, MaintenanceQueue], exports: [LeaseRepository, WorkerNotifier, MaintenanceQueue] })
export class LeasingModule {}
