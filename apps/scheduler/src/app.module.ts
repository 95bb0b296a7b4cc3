import { type DynamicModule, Module } from '@nestjs/common';
import { AppliancesModule } from './appliances/appliances.module.js';
import { SCHEDULER_ENV, type SchedulerEnv } from './config/env.js';
import { DatabaseModule } from './database/database.module.js';
import { DispatchModule } from './dispatch/dispatch.module.js';
import { ObservabilityModule } from './health/observability.module.js';
import { JobsModule } from './jobs/jobs.module.js';
import { MarketModule } from './market/market.module.js';
import { RedisModule } from './redis/redis.module.js';

@Module({})
export class AppModule {
  static forEnv(env: SchedulerEnv): DynamicModule {
    return {
      module: AppModule,
      global: true,
      providers: [{ provide: SCHEDULER_ENV, useValue: env }],
      exports: [SCHEDULER_ENV],
      imports: [ObservabilityModule, DatabaseModule, RedisModule, JobsModule, DispatchModule, MarketModule, AppliancesModule],
    };
  }
}
