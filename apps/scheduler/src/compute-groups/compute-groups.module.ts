import { Module } from '@nestjs/common';
import { ComputeGroupsController } from './compute-groups.controller.js';
import { ComputeGroupsRepository } from './compute-groups.repository.js';
import { ComputeGroupsService } from './compute-groups.service.js';

/** Compute groups: which workers run which jobs (DESIGN.md "compute groups"). */
@Module({
  controllers: [ComputeGroupsController],
  providers: [ComputeGroupsRepository, ComputeGroupsService],
  exports: [ComputeGroupsService],
})
export class ComputeGroupsModule {}
