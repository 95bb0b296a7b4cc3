import { type DynamicModule, Injectable, Module, type OnModuleInit } from '@nestjs/common';
import { LedgerModule } from '../ledger/ledger.module.js';
import { LedgerService } from '../ledger/ledger.service.js';
import { BRIDGE_SETTINGS, loadBridgeSettings, type BridgeSettings } from './bridge-env.js';
import { BridgeChain } from './bridge-chain.js';
import { BridgeConsumer } from './bridge.consumer.js';
import { BridgeMetrics } from './bridge-metrics.js';
import { BridgeQueue } from './bridge.queue.js';
import { BridgeRepository } from './bridge.repository.js';
import { ChainIdentityGuard } from './chain-identity.service.js';
import { DepositWatcher } from './deposit-watcher.service.js';
import { BRIDGE_LEDGER } from './domain/bridge-ledger.js';
import { WithdrawalSender } from './withdrawal-sender.service.js';
import { WithdrawalsController } from './withdrawals.controller.js';
import { WithdrawalsService } from './withdrawals.service.js';

/** Creates the bridge's tables (bridge-schema.sql) before anything uses them. */
@Injectable()
class BridgeSchema implements OnModuleInit {
  constructor(private readonly repository: BridgeRepository) {}
  async onModuleInit(): Promise<void> {
    await this.repository.applySchema();
  }
}

/**
 * The Ethereum bridge (README.md here): deposits seen on the vault are credited to the ledger once
 * final; withdrawals are held on the ledger, paid by the vault, then burnt or given back.
 * Needs the bank's global providers (BANK_ENV, PrismaService, RedisConnections, Metrics).
 *
 *   imports: [..., BridgeModule.forRoot({ ...process.env, ...overrides })]
 *
 * With no chain configured it still serves GET /withdrawals/:id and GET /bridge; POST /withdrawals
 * answers ECHAIN and no background job runs.
 */
@Module({})
export class BridgeModule {
  static forRoot(source: Record<string, string | undefined> = process.env): DynamicModule {
    const settings: BridgeSettings = loadBridgeSettings(source);
    return {
      module: BridgeModule,
      imports: [LedgerModule],
      controllers: [WithdrawalsController],
      providers: [
        { provide: BRIDGE_SETTINGS, useValue: settings },
        { provide: BRIDGE_LEDGER, useExisting: LedgerService },
        BridgeSchema,
        BridgeRepository,
        BridgeChain,
        BridgeMetrics,
        ChainIdentityGuard,
        BridgeQueue,
        DepositWatcher,
        WithdrawalSender,
        WithdrawalsService,
        BridgeConsumer,
      ],
      exports: [BRIDGE_SETTINGS, BridgeChain, DepositWatcher, WithdrawalSender, WithdrawalsService],
    };
  }
}
