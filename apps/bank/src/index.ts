// @commune/bank: the DCC ledger service. See apps/bank/README.md.
export { startBank, migrationsDir, type BankApp } from './bank-app.js';
export { AppModule } from './app.module.js';
export { BankEnvSchema, loadBankEnv, BANK_ENV, DEV_FEE_ACCOUNT, DEV_SERVICE_TOKEN, type BankEnv } from './config/env.js';
export { LedgerModule } from './ledger/ledger.module.js';
export {
  LedgerService,
  BRIDGE_ACCOUNT,
  MintSchema,
  ReserveSchema,
  BurnSchema,
  ResolveHoldSchema,
  InternalTransferSchema,
  type Mint,
  type Reserve,
  type Burn,
  type ResolveHold,
  type InternalTransfer,
  type Outcome,
} from './ledger/ledger.service.js';
export type { LedgerAudit } from './ledger/ledger.repository.js';
export { PrismaService } from './database/prisma.service.js';
export { RedisConnections } from './redis/redis.module.js';
export { Metrics } from './health/metrics.js';
