import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import {
  ApplianceFunctionNameSchema, ApplianceNameSchema, ApplianceVersionIdSchema, PublishApplianceRequestSchema, ResolveApplianceQuerySchema,
  type ApplianceFunctionSource, type ApplianceVersionInfo, type PublishApplianceReply,
} from '@commune/protocol';
import { AppliancesService } from './appliances.service.js';

/**
 * REST for appliances (spec "Appliance Handles"). Publishing is authorised by the publisher's
 * signature inside the body; reading is open: published functions are meant to be used.
 */
@Controller('appliances')
export class AppliancesController {
  constructor(private readonly appliances: AppliancesService) {}

  /** spec publish(): POST /appliances {appliance: ApplianceSpec, signature}. */
  @Post()
  async publish(@Body() body: unknown): Promise<PublishApplianceReply> {
    return this.appliances.publish(PublishApplianceRequestSchema.parse(body));
  }

  /** One version by id. Declared before `:name` so that "versions" is never taken for a name. */
  @Get('versions/:versionId')
  async version(@Param('versionId') versionId: string): Promise<ApplianceVersionInfo> {
    return this.appliances.version(ApplianceVersionIdSchema.parse(versionId));
  }

  /** A function's source, which appliance.for / appliance.do deploy (or run locally) as the job's work. */
  @Get('versions/:versionId/functions/:function')
  async functionSource(@Param('versionId') versionId: string, @Param('function') name: string): Promise<ApplianceFunctionSource> {
    return this.appliances.functionSource(ApplianceVersionIdSchema.parse(versionId), ApplianceFunctionNameSchema.parse(name));
  }

  /** spec new Appliance(name, version): GET /appliances/:name?version=^1.0.0 (or %231234...: "#" + versionId); default "*". */
  @Get(':name')
  async resolve(@Param('name') name: string, @Query() query: Record<string, string>): Promise<ApplianceVersionInfo> {
    return this.appliances.resolve(ApplianceNameSchema.parse(name), ResolveApplianceQuerySchema.parse(query).version);
  }
}
