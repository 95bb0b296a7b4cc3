import { Inject, Injectable, Logger, type OnModuleDestroy } from '@nestjs/common';
import { Transaction, Wallet, getAddress, type JsonRpcProvider, type TransactionRequest } from 'ethers';
import {
  attachVault,
  connectProvider,
  queryDeposits,
  queryWithdrawals,
  revertReason,
  vaultInterface,
  type BridgeVaultContract,
  type DepositedEvent,
} from '@commune/chain';
import { CommuneError, ErrorCode } from '@commune/protocol';
import { BRIDGE_SETTINGS, type BridgeChainSettings, type BridgeSettings } from './bridge-env.js';

/** What the node said to a raw transaction. Transport failures (no answer) are thrown instead. */
export type BroadcastOutcome =
  | { kind: 'accepted' }
  /** The nonce is already used (by this transaction, mined, or by another). */
  | { kind: 'nonce-used'; message: string }
  /** The node refused it (e.g. the operator cannot pay for gas): it is not in the pool. */
  | { kind: 'rejected'; message: string };

/** Result of dry-running a withdrawal against the newest block. */
export type Preflight = { ok: true; gasLimit: bigint } | { ok: false; reason: string };

interface Fees {
  maxFeePerGas?: bigint;
  maxPriorityFeePerGas?: bigint;
  gasPrice?: bigint;
}

/**
 * The JSON-RPC error object behind an ethers error, when the node answered with one: ethers keeps
 * it in `info.error` for the errors it recognises (INSUFFICIENT_FUNDS, NONCE_EXPIRED, ...) and in
 * `error` for the rest ("could not coalesce error").
 */
function nodeError(error: unknown): { code: number; message: string } | null {
  const failure = error as { info?: { error?: { code?: unknown; message?: unknown } }; error?: { code?: unknown; message?: unknown } } | null;
  for (const answer of [failure?.info?.error, failure?.error]) {
    // A JSON-RPC error has a numeric code; a socket error (ECONNRESET: the node may have the transaction) does not.
    if (answer && typeof answer.code === 'number' && typeof answer.message === 'string') return { code: answer.code, message: answer.message };
  }
  return null;
}

/**
 * The bridge's view of the chain: the vault read through a provider, and the operator key, which
 * signs withdrawal transactions offline so the bridge stores each one (and its nonce) before it is
 * broadcast. Nothing here decides anything about money; see domain/withdrawal.ts.
 */
@Injectable()
export class BridgeChain implements OnModuleDestroy {
  private readonly logger = new Logger(BridgeChain.name);
  private readonly config: BridgeChainSettings | null;
  private providerInstance: JsonRpcProvider | null = null;
  private vaultInstance: BridgeVaultContract | null = null;
  private readonly operator: Wallet | null;
  private verifiedChainId: number | null = null;

  constructor(@Inject(BRIDGE_SETTINGS) private readonly settings: BridgeSettings) {
    this.config = settings.enabled ? settings.chain : null;
    this.operator = this.config ? new Wallet(this.config.operatorKey) : null;
  }

  get enabled(): boolean {
    return this.config !== null;
  }

  private get chainConfig(): BridgeChainSettings {
    if (!this.config) throw new CommuneError(ErrorCode.ECHAIN, 'the Ethereum bridge is not configured');
    return this.config;
  }

  get provider(): JsonRpcProvider {
    if (!this.providerInstance) {
      const config = this.chainConfig;
      this.providerInstance = connectProvider(config.rpcUrl, { chainId: config.chainId ?? undefined, timeoutMs: this.settings.rpcTimeoutMs });
    }
    return this.providerInstance;
  }

  private get vault(): BridgeVaultContract {
    this.vaultInstance ??= attachVault(this.chainConfig.vault, this.provider);
    return this.vaultInstance;
  }

  get operatorAddress(): string {
    if (!this.operator) throw new CommuneError(ErrorCode.ECHAIN, 'the Ethereum bridge is not configured');
    return this.operator.address;
  }

  get vaultAddress(): string {
    return getAddress(this.chainConfig.vault);
  }

  get tokenAddress(): string {
    return getAddress(this.chainConfig.token);
  }

  get startBlock(): number {
    return this.chainConfig.startBlock;
  }

  /** The node's chain id, checked once against the configured one: the bridge never runs against another chain. */
  async chainId(): Promise<number> {
    if (this.verifiedChainId !== null) return this.verifiedChainId;
    const reported = Number(BigInt(await this.provider.send('eth_chainId', [])));
    const expected = this.chainConfig.chainId;
    if (expected !== null && expected !== reported) {
      throw new CommuneError(ErrorCode.ECHAIN, `the node at ${this.chainConfig.rpcUrl} is chain ${reported}, the bridge is configured for chain ${expected}`);
    }
    const code = await this.provider.getCode(this.vaultAddress);
    if (code === '0x') throw new CommuneError(ErrorCode.ECHAIN, `no contract at the vault address ${this.vaultAddress} on chain ${reported}`);
    const operator = await this.vault.operator();
    if (operator !== this.operatorAddress) {
      // Not fatal (deposits still work; the vault may get this operator later), but every withdrawal would revert NotOperator.
      this.logger.error(`the vault's operator is ${operator}, not this bank's key ${this.operatorAddress}: withdrawals will fail (NotOperator)`);
    }
    this.verifiedChainId = reported;
    return reported;
  }

  /**
   * What the node is right now: its chain id and genesis block hash, asked afresh every time (not
   * the id chainId() verified once), so a chain replaced under a running bank is noticed.
   */
  async identity(): Promise<{ chainId: number; genesisHash: string }> {
    const [chainId, genesis] = await Promise.all([this.provider.send('eth_chainId', []), this.provider.send('eth_getBlockByNumber', ['0x0', false])]);
    const hash = (genesis as { hash?: unknown } | null)?.hash;
    if (typeof hash !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(hash)) throw new CommuneError(ErrorCode.ECHAIN, `the node at ${this.chainConfig.rpcUrl} gave no genesis block`);
    return { chainId: Number(BigInt(chainId as string)), genesisHash: hash.toLowerCase() };
  }

  /** After the bridge moved to a new chain: check the chain id, the vault's code and its operator again. */
  forgetVerification(): void {
    this.verifiedChainId = null;
  }

  async latestBlock(): Promise<number> {
    return this.provider.getBlockNumber();
  }

  async blockHash(blockNumber: number): Promise<string | null> {
    return (await this.provider.getBlock(blockNumber))?.hash ?? null;
  }

  async deposits(fromBlock: number, toBlock: number): Promise<DepositedEvent[]> {
    return queryDeposits(this.provider, this.vaultAddress, fromBlock, toBlock);
  }

  /** The operator's transaction count at a block: every nonce below it is used there. */
  async operatorNonce(blockTag: number | 'latest' | 'pending'): Promise<number> {
    return this.provider.getTransactionCount(this.operatorAddress, blockTag);
  }

  /** The vault's payment of `withdrawalId` on the current chain, if it made one (its log searched from `fromBlock`). */
  async payment(withdrawalId: string, latestBlock: number, fromBlock: number | null): Promise<{ txHash: string; blockNumber: number } | null> {
    if (!(await this.vault.withdrawn(withdrawalId, { blockTag: latestBlock }))) return null;
    const events = await queryWithdrawals(this.provider, this.vaultAddress, withdrawalId, Math.max(this.startBlock, fromBlock ?? 0), latestBlock);
    const event = events[0];
    // Paid but the log is not found (a node that prunes logs): count confirmations from now.
    return event ? { txHash: event.transactionHash, blockNumber: event.blockNumber } : { txHash: '', blockNumber: latestBlock };
  }

  /** True when the node has the transaction, in its pool or in a block. */
  async transactionKnown(txHash: string): Promise<boolean> {
    return (await this.provider.getTransaction(txHash)) !== null;
  }

  /**
   * Dry-runs vault.withdraw from the operator against the newest block (eth_call): a revert (e.g.
   * the vault lacks tokens) says it cannot be paid now. eth_call rather than eth_estimateGas: the
   * gas limit is fixed (BRIDGE_WITHDRAW_GAS_LIMIT), and ganache's estimateGas stalls for seconds
   * now and then while it mines.
   */
  async preflight(to: string, amount: bigint, withdrawalId: string): Promise<Preflight> {
    try {
      await this.vault.withdraw.staticCall(to, amount, withdrawalId, { from: this.operatorAddress, gasLimit: this.settings.withdrawGasLimit });
      return { ok: true, gasLimit: BigInt(this.settings.withdrawGasLimit) };
    } catch (error) {
      const reason = revertReason(error);
      if (reason !== null) return { ok: false, reason };
      throw error;
    }
  }

  private async currentFees(): Promise<Fees> {
    const data = await this.provider.getFeeData();
    if (data.maxFeePerGas !== null && data.maxPriorityFeePerGas !== null) return { maxFeePerGas: data.maxFeePerGas, maxPriorityFeePerGas: data.maxPriorityFeePerGas };
    if (data.gasPrice !== null) return { gasPrice: data.gasPrice };
    throw new CommuneError(ErrorCode.ECHAIN, 'the node gave no fee data');
  }

  /** Current fees, at least 12.5 % (+1 wei) above `previous`'s, as a node wants of a replacement. */
  private async bumpedFees(previous: Transaction): Promise<Fees> {
    const current = await this.currentFees();
    const bump = (old: bigint | null, now: bigint | undefined) => {
      const minimum = old === null ? 0n : (old * 1125n) / 1000n + 1n;
      return now === undefined || now < minimum ? minimum : now;
    };
    if (previous.type === 2) {
      return { maxFeePerGas: bump(previous.maxFeePerGas, current.maxFeePerGas ?? current.gasPrice), maxPriorityFeePerGas: bump(previous.maxPriorityFeePerGas, current.maxPriorityFeePerGas ?? current.gasPrice) };
    }
    return { gasPrice: bump(previous.gasPrice, current.gasPrice ?? current.maxFeePerGas) };
  }

  private async sign(request: TransactionRequest, fees: Fees): Promise<{ rawTx: string; txHash: string }> {
    const operator = this.operator!;
    const chainId = await this.chainId();
    const rawTx = await operator.signTransaction({ ...request, ...fees, chainId, type: fees.gasPrice !== undefined ? 0 : 2 });
    return { rawTx, txHash: Transaction.from(rawTx).hash! };
  }

  /** Signs vault.withdraw(to, amount, withdrawalId) with an explicit nonce. Nothing is sent. */
  async signWithdrawal(options: { to: string; amount: bigint; withdrawalId: string; nonce: number; gasLimit: bigint }): Promise<{ rawTx: string; txHash: string }> {
    const data = vaultInterface().encodeFunctionData('withdraw', [options.to, options.amount, options.withdrawalId]);
    return this.sign({ to: this.vaultAddress, data, value: 0n, nonce: options.nonce, gasLimit: options.gasLimit }, await this.currentFees());
  }

  /** The same transaction (or, with `cancel`, 0 ether to the operator itself) at the same nonce, with higher fees. */
  async signReplacement(previousRawTx: string, cancel: boolean): Promise<{ rawTx: string; txHash: string }> {
    const previous = Transaction.from(previousRawTx);
    const fees = await this.bumpedFees(previous);
    const request: TransactionRequest = cancel
      ? { to: this.operatorAddress, data: '0x', value: 0n, nonce: previous.nonce, gasLimit: 21_000n }
      : { to: previous.to, data: previous.data, value: previous.value, nonce: previous.nonce, gasLimit: previous.gasLimit };
    return this.sign(request, fees);
  }

  /** Sends a signed transaction. Throws only when the node could not be asked (then nothing is known). */
  async broadcast(rawTx: string): Promise<BroadcastOutcome> {
    try {
      await this.provider.send('eth_sendRawTransaction', [rawTx]);
      return { kind: 'accepted' };
    } catch (error) {
      const code = (error as { code?: string }).code;
      const answer = nodeError(error);
      // No answer (timeout, connection lost): the node may or may not have it; the next pass looks.
      if (answer === null) throw error;
      if (code === 'NONCE_EXPIRED' || (/nonce/i.test(answer.message) && /(too low|correct nonce|already)/i.test(answer.message))) {
        return { kind: 'nonce-used', message: answer.message };
      }
      return { kind: 'rejected', message: answer.message };
    }
  }

  onModuleDestroy(): void {
    this.providerInstance?.destroy();
  }
}
