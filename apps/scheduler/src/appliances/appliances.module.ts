import { Module } from '@nestjs/common';
import { AppliancesController } from './appliances.controller.js';
import { AppliancesRepository } from './appliances.repository.js';
import { AppliancesService } from './appliances.service.js';

/**
 * Appliances (spec "Appliance Handles"): published, versioned, named sets of work functions.
 * Owns the appliances, appliance_versions and appliance_functions tables; JobsService asks it
 * whether a job's work is the appliance function the job names.
 */
@Module({ controllers: [AppliancesController], providers: [AppliancesRepository, AppliancesService], exports: [AppliancesService] })
export class AppliancesModule {}
