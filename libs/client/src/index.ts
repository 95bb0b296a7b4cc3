/**
 * @commune/client: the DCP Compute API for Commune. `init()` gives `compute` (compute.for,
 * compute.do, job handles, result handles) and `wallet` (keystores, bank balance and transfers), and
 * makes DCP's `require('dcp/compute')`, `dcp/wallet`, ... and `globalThis.dcpConfig` work (dcp/).
 * See README.md for what is implemented and where Commune differs from DCP.
 */
export { init, type Commune, type CommuneWallet, type InitOptions } from './init.js';
export type { DcpConfig, DcpLocation } from './dcp/dcp-config.js';
export type { DcpConfigFragment, InitArgument } from './dcp/init-arguments.js';
export type { DcpWallet } from './dcp/wallet.js';
export { providedDcpModules, refusedDcpModules, type ProvidedDcpModule } from './dcp/module-names.js';
export { RemoteDataPattern, RemoteDataSet } from './dcp/remote-data.js';
export {
  createWallet,
  type HistoryOptions,
  type TransferOptions,
  type WalletHistoryPage,
  type WalletLedgerEntry,
  type WalletOptions,
  type WalletTransferReceipt,
} from './wallet.js';
export { BankLink, type BankLinkOptions } from './bank.js';
export { unitsToDcc, parseSlicePaymentOffer, type ParsedOffer } from './money.js';
export {
  createCompute,
  parseDoArguments,
  parseForArguments,
  workSourceOf,
  type Compute,
  type MultiRangeSpec,
  type ParsedForm,
  type RangeBound,
  type RangeSpec,
  type WorkArguments,
  type WorkFunction,
} from './compute.js';
export {
  Job,
  WorkEmitter,
  checkSlicePaymentOffer,
  slicePaymentOfferToDcc,
  type AcceptedEvent,
  type ConsoleEvent,
  type JobContext,
  type JobDefinition,
  type JobRunStatus,
  type JobSigner,
  type JobStatusView,
  type LocalJobSpec,
  type MarketValueOffer,
  type ComputeGroup,
  type NoProgressDataEvent,
  type NoProgressEvent,
  type ReadyState,
  marketRatePerSlice,
  type ResultEvent,
  type SliceErrorEvent,
  type SlicePaymentOffer,
  type StatusEvent,
} from './job.js';
export { stats, type Stats, type StatsSet } from './stats.js';
export {
  Appliance,
  applianceClassFor,
  type ApplianceClass,
  type ApplianceContext,
  type ApplianceForms,
  type ApplianceFunctionDefinition,
  type PublishResult,
} from './appliance.js';
export {
  createResultHandle,
  keyOf,
  type RemoteResults,
  type ResultHandle,
  type ResultHandleMethods,
  type ResultStore,
  type SliceRange,
  type SliceRangeArgument,
  type SliceStatEntry,
} from './result-handle.js';
export { calculateSlicePayment, getMarketValue } from './market.js';
export { sliceSetOf, type SliceRangeInput, type SliceRangeSpec } from './owner-api.js';
export { estimateSlice, type EstimateOptions } from './estimate.js';
export type { LocalExecLimits } from './local-exec.js';
export {
  SchedulerConnection,
  type ClientSocket,
  type ConnectionOptions,
  type DeployAccepted,
  type JobEventSink,
  type RunSnapshot,
  type SchedulerLink,
} from './connection.js';
export {
  createKeystore,
  defaultKeystoreName,
  devKeystoreScryptN,
  loadKeystore,
  loadOrCreateDefaultKeystore,
  resolveHome,
  type KeystoreWallet,
} from './keystore.js';
export { CommuneError, ErrorCode, isCommuneError } from '@commune/protocol';
