import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ErrorCode } from '@commune/protocol';
import { ServiceExceptionFilter } from '@commune/service';
import { BANK_ENV, type BankEnv } from './config/env.js';
import { DatabaseModule } from './database/database.module.js';
import { ObservabilityModule } from './health/observability.module.js';
import { LedgerModule } from './ledger/ledger.module.js';
import { RedisModule } from './redis/redis.module.js';
import { BridgeModule } from './bridge/bridge.module.js';

@Module({})
export class AppModule {
  /** `source`: the raw environment the bridge reads its BRIDGE_* settings from. */
  static forEnv(env: BankEnv, source: Record<string, string | undefined> = process.env): DynamicModule {
    return {
      module: AppModule,
      global: true,
      providers: [{ provide: BANK_ENV, useValue: env }, { provide: APP_FILTER, useValue: new ServiceExceptionFilter(ErrorCode.EBANK) }],
      exports: [BANK_ENV],
      imports: [
        ObservabilityModule,
        DatabaseModule,
        RedisModule,
        LedgerModule,
        BridgeModule.forRoot(source),
      ],
    };
  }
}
