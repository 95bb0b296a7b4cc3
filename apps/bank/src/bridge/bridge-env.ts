import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { AddressSchema } from '@commune/protocol';

const positiveInt = () => z.coerce.number().int().positive();
const PrivateKeySchema = z.string().regex(/^0x[0-9a-fA-F]{64}$/, 'a 32-byte hex private key');

/**
 * The bridge's environment, checked at boot. The chain comes either from BRIDGE_CONFIG_FILE (the
 * JSON `node libs/chain/dist/local-chain.js --out <file>` writes) or from the BRIDGE_TOKEN_ADDRESS /
 * BRIDGE_VAULT_ADDRESS / BRIDGE_OPERATOR_KEY triple; a variable set explicitly wins over the file.
 */
export const BridgeEnvSchema = z.object({
  /** JSON-RPC endpoint of the chain. Default: the config file's rpcUrl, else http://127.0.0.1:8545. */
  CHAIN_RPC_URL: z.string().url().optional(),
  BRIDGE_CONFIG_FILE: z.string().min(1).optional(),
  BRIDGE_TOKEN_ADDRESS: AddressSchema.optional(),
  BRIDGE_VAULT_ADDRESS: AddressSchema.optional(),
  /** The vault's operator key: the one sender of withdrawal transactions. */
  BRIDGE_OPERATOR_KEY: PrivateKeySchema.optional(),
  /** Expected chain id; the bridge refuses to run against another chain. Default: the config file's, else whatever the node says. */
  BRIDGE_CHAIN_ID: positiveInt().optional(),
  /** First block the deposit watcher reads (the vault's deployment block). */
  BRIDGE_START_BLOCK: z.coerce.number().int().nonnegative().optional(),
  /**
   * 1: the chain is a dev chain (scripts/start.mjs, compose, deploy/dev-chain): when the node turns
   * out to be a new chain (another genesis block), the bridge drops its state about the old one and
   * goes on with the new one, saying so once. Otherwise a new chain stops the bridge until the
   * node is the right chain again.
   */
  BRIDGE_DEV_CHAIN: z.enum(['true', 'false', '1', '0', '']).default('0'),
  /** Blocks on top of a block before the bridge treats it as final (deposits credited, withdrawals confirmed). */
  BRIDGE_CONFIRMATIONS: z.coerce.number().int().min(0).max(10_000).default(3),
  /** How often the deposit watcher and the withdrawal sender run. */
  BRIDGE_POLL_INTERVAL_MS: positiveInt().default(2_000),
  /** Default: true exactly when a chain is configured. true without a configuration is a boot error. */
  BRIDGE_ENABLED: z.enum(['true', 'false', '1', '0']).optional(),
  /** Blocks per eth_getLogs call of the deposit watcher. */
  BRIDGE_MAX_BLOCKS_PER_SCAN: positiveInt().max(100_000).default(2_000),
  /** Scans (of up to BRIDGE_MAX_BLOCKS_PER_SCAN blocks) per run: a long catch-up continues next run. */
  BRIDGE_MAX_SCANS_PER_RUN: positiveInt().max(1_000).default(20),
  /** Broadcasts the node may refuse, and fee-bumped replacements, before a withdrawal gives up. */
  BRIDGE_MAX_SEND_ATTEMPTS: positiveInt().max(100).default(5),
  /** A withdrawal transaction left unmined this long is broadcast again or replaced with higher fees. */
  BRIDGE_RESEND_AFTER_MS: positiveInt().default(60_000),
  /** Open withdrawals advanced per run (oldest first). */
  BRIDGE_MAX_WITHDRAWALS_PER_RUN: positiveInt().max(10_000).default(100),
  /** Any one JSON-RPC call is abandoned after this long. */
  BRIDGE_RPC_TIMEOUT_MS: positiveInt().default(10_000),
  /** Gas limit of vault.withdraw transactions (it uses about 60-85k; unused gas is not paid). */
  BRIDGE_WITHDRAW_GAS_LIMIT: z.coerce.number().int().min(50_000).max(10_000_000).default(150_000),
});
export type BridgeEnv = z.infer<typeof BridgeEnvSchema>;

/** The JSON written by `local-chain --out` (BridgeChainConfig in @commune/chain). */
export const BridgeConfigFileSchema = z.object({
  rpcUrl: z.string().url(),
  chainId: z.number().int().positive(),
  token: AddressSchema,
  vault: AddressSchema,
  operatorKey: PrivateKeySchema,
  startBlock: z.number().int().nonnegative().default(0),
});

export interface BridgeChainSettings {
  rpcUrl: string;
  /** Null: take the node's. */
  chainId: number | null;
  token: string;
  vault: string;
  operatorKey: string;
  startBlock: number;
}

export interface BridgeTuning {
  confirmations: number;
  pollIntervalMs: number;
  maxBlocksPerScan: number;
  maxScansPerRun: number;
  maxSendAttempts: number;
  resendAfterMs: number;
  maxWithdrawalsPerRun: number;
  rpcTimeoutMs: number;
  withdrawGasLimit: number;
  /** BRIDGE_DEV_CHAIN: a new chain resets the bridge's chain state instead of stopping the bridge. */
  devChain: boolean;
}

export type BridgeSettings = ({ enabled: true; chain: BridgeChainSettings } | { enabled: false; reason: string }) & BridgeTuning;

export const BRIDGE_SETTINGS = Symbol('BRIDGE_SETTINGS');
export const DEFAULT_CHAIN_RPC_URL = 'http://127.0.0.1:8545';

function problemsOf(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
}

/** Reads and checks the bridge's environment (and its config file). Throws a message naming every problem. */
export function loadBridgeSettings(source: Record<string, string | undefined> = process.env): BridgeSettings {
  const parsed = BridgeEnvSchema.safeParse(source);
  if (!parsed.success) throw new Error(`invalid bridge environment: ${problemsOf(parsed.error)}`);
  const env = parsed.data;
  const tuning: BridgeTuning = {
    confirmations: env.BRIDGE_CONFIRMATIONS,
    pollIntervalMs: env.BRIDGE_POLL_INTERVAL_MS,
    maxBlocksPerScan: env.BRIDGE_MAX_BLOCKS_PER_SCAN,
    maxScansPerRun: env.BRIDGE_MAX_SCANS_PER_RUN,
    maxSendAttempts: env.BRIDGE_MAX_SEND_ATTEMPTS,
    resendAfterMs: env.BRIDGE_RESEND_AFTER_MS,
    maxWithdrawalsPerRun: env.BRIDGE_MAX_WITHDRAWALS_PER_RUN,
    rpcTimeoutMs: env.BRIDGE_RPC_TIMEOUT_MS,
    withdrawGasLimit: env.BRIDGE_WITHDRAW_GAS_LIMIT,
    devChain: env.BRIDGE_DEV_CHAIN === '1' || env.BRIDGE_DEV_CHAIN === 'true',
  };
  const explicitlyEnabled = env.BRIDGE_ENABLED === undefined ? undefined : env.BRIDGE_ENABLED === 'true' || env.BRIDGE_ENABLED === '1';
  if (explicitlyEnabled === false) return { enabled: false, reason: 'BRIDGE_ENABLED is false', ...tuning };

  let file: z.infer<typeof BridgeConfigFileSchema> | null = null;
  if (env.BRIDGE_CONFIG_FILE) {
    if (!existsSync(env.BRIDGE_CONFIG_FILE)) {
      throw new Error(`invalid bridge environment: BRIDGE_CONFIG_FILE ${env.BRIDGE_CONFIG_FILE} does not exist (start the chain with \`node libs/chain/dist/local-chain.js --out ${env.BRIDGE_CONFIG_FILE}\`)`);
    }
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(env.BRIDGE_CONFIG_FILE, 'utf8'));
    } catch (error) {
      throw new Error(`invalid bridge environment: BRIDGE_CONFIG_FILE ${env.BRIDGE_CONFIG_FILE} is not JSON: ${(error as Error).message}`);
    }
    const config = BridgeConfigFileSchema.safeParse(json);
    if (!config.success) throw new Error(`invalid bridge config file ${env.BRIDGE_CONFIG_FILE}: ${problemsOf(config.error)}`);
    file = config.data;
  }
  const token = env.BRIDGE_TOKEN_ADDRESS ?? file?.token;
  const vault = env.BRIDGE_VAULT_ADDRESS ?? file?.vault;
  const operatorKey = env.BRIDGE_OPERATOR_KEY ?? file?.operatorKey;
  if (!token || !vault || !operatorKey) {
    const missing = [!token && 'BRIDGE_TOKEN_ADDRESS', !vault && 'BRIDGE_VAULT_ADDRESS', !operatorKey && 'BRIDGE_OPERATOR_KEY'].filter(Boolean).join(', ');
    if (explicitlyEnabled) throw new Error(`invalid bridge environment: BRIDGE_ENABLED is true but ${missing} (or BRIDGE_CONFIG_FILE) is not set`);
    return { enabled: false, reason: `no chain configured (${missing} or BRIDGE_CONFIG_FILE)`, ...tuning };
  }
  return {
    enabled: true,
    chain: {
      rpcUrl: env.CHAIN_RPC_URL ?? file?.rpcUrl ?? DEFAULT_CHAIN_RPC_URL,
      chainId: env.BRIDGE_CHAIN_ID ?? file?.chainId ?? null,
      token,
      vault,
      operatorKey,
      startBlock: env.BRIDGE_START_BLOCK ?? file?.startBlock ?? 0,
    },
    ...tuning,
  };
}
