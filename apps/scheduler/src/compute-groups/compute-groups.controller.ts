import { Body, Controller, Get, Param, Post } from '@nestjs/common';
import { JoinKeySchema, type ComputeGroupInfo } from '@commune/protocol';
import { ComputeGroupsService } from './compute-groups.service.js';

/** REST: create a compute group (signed by its owner) and describe one (never its hash). */
@Controller('compute-groups')
export class ComputeGroupsController {
  constructor(private readonly groups: ComputeGroupsService) {}

  @Post()
  async create(@Body() body: unknown): Promise<ComputeGroupInfo> {
    return this.groups.create(body);
  }

  @Get(':joinKey')
  async info(@Param('joinKey') joinKey: string): Promise<ComputeGroupInfo> {
    return this.groups.info(JoinKeySchema.parse(joinKey));
  }
}
