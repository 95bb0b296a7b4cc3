import {
  BaseContract,
  ContractFactory,
  Interface,
  getAddress,
  type AddressLike,
  type BigNumberish,
  type BytesLike,
  type ContractRunner,
  type ContractTransaction,
  type ContractTransactionResponse,
  type Log,
  type Overrides,
  type Provider,
  type Signer,
} from 'ethers';
import { loadArtifact } from './artifacts.js';

/** A view function: call it, or `staticCall` it. Overrides (e.g. `blockTag`) may follow the arguments. */
export interface ContractView<A extends unknown[], R> {
  (...args: A | [...A, Overrides]): Promise<R>;
  staticCall(...args: A | [...A, Overrides]): Promise<R>;
}

/** A state-changing function: send it, or dry-run / estimate / populate it first. */
export interface ContractSend<A extends unknown[], R = void> {
  (...args: A | [...A, Overrides]): Promise<ContractTransactionResponse>;
  staticCall(...args: A | [...A, Overrides]): Promise<R>;
  estimateGas(...args: A | [...A, Overrides]): Promise<bigint>;
  populateTransaction(...args: A | [...A, Overrides]): Promise<ContractTransaction>;
}

/** DCCToken (contracts/DCCToken.sol), typed. */
export type DCCTokenContract = BaseContract & {
  name: ContractView<[], string>;
  symbol: ContractView<[], string>;
  decimals: ContractView<[], bigint>;
  totalSupply: ContractView<[], bigint>;
  owner: ContractView<[], string>;
  balanceOf: ContractView<[account: AddressLike], bigint>;
  allowance: ContractView<[owner: AddressLike, spender: AddressLike], bigint>;
  transfer: ContractSend<[to: AddressLike, value: BigNumberish], boolean>;
  approve: ContractSend<[spender: AddressLike, value: BigNumberish], boolean>;
  transferFrom: ContractSend<[from: AddressLike, to: AddressLike, value: BigNumberish], boolean>;
  mint: ContractSend<[to: AddressLike, value: BigNumberish]>;
  transferOwnership: ContractSend<[newOwner: AddressLike]>;
};

/** BridgeVault (contracts/BridgeVault.sol), typed. */
export type BridgeVaultContract = BaseContract & {
  token: ContractView<[], string>;
  owner: ContractView<[], string>;
  operator: ContractView<[], string>;
  depositCount: ContractView<[], bigint>;
  withdrawn: ContractView<[withdrawalId: BytesLike], boolean>;
  deposit: ContractSend<[amount: BigNumberish, ledgerAccount: AddressLike], bigint>;
  withdraw: ContractSend<[to: AddressLike, amount: BigNumberish, withdrawalId: BytesLike]>;
  setOperator: ContractSend<[newOperator: AddressLike]>;
  transferOwnership: ContractSend<[newOwner: AddressLike]>;
};

export interface ContractAddresses {
  token: string;
  vault: string;
}

export interface BridgeContracts {
  token: DCCTokenContract;
  vault: BridgeVaultContract;
  addresses: ContractAddresses;
}

export const tokenInterface = (): Interface => new Interface(loadArtifact('DCCToken').abi);
export const vaultInterface = (): Interface => new Interface(loadArtifact('BridgeVault').abi);

export function attachToken(address: string, runner: ContractRunner | null): DCCTokenContract {
  return new BaseContract(getAddress(address), loadArtifact('DCCToken').abi, runner) as DCCTokenContract;
}

export function attachVault(address: string, runner: ContractRunner | null): BridgeVaultContract {
  return new BaseContract(getAddress(address), loadArtifact('BridgeVault').abi, runner) as BridgeVaultContract;
}

/** The token and the vault at known addresses, talking through `runner` (a provider to read, a signer to send). */
export function attachContracts(addresses: ContractAddresses, runner: ContractRunner | null): BridgeContracts {
  return {
    token: attachToken(addresses.token, runner),
    vault: attachVault(addresses.vault, runner),
    addresses: { token: getAddress(addresses.token), vault: getAddress(addresses.vault) },
  };
}

/**
 * Deploys the token (owned by `signer`) and the vault (owned by `signer`, operated by `operator`,
 * default `signer`) and waits until both are mined. Returns them connected to `signer`.
 */
export async function deployContracts(signer: Signer, options: { operator?: string } = {}): Promise<BridgeContracts & { deployBlock: number }> {
  const tokenArtifact = loadArtifact('DCCToken');
  const vaultArtifact = loadArtifact('BridgeVault');
  const operator = getAddress(options.operator ?? (await signer.getAddress()));
  const tokenFactory = new ContractFactory(tokenArtifact.abi, tokenArtifact.bytecode, signer);
  const token = await tokenFactory.deploy();
  await token.waitForDeployment();
  const tokenAddress = await token.getAddress();
  const vaultFactory = new ContractFactory(vaultArtifact.abi, vaultArtifact.bytecode, signer);
  const vault = await vaultFactory.deploy(tokenAddress, operator);
  await vault.waitForDeployment();
  const receipt = await vault.deploymentTransaction()?.wait();
  const addresses = { token: tokenAddress, vault: await vault.getAddress() };
  return { ...attachContracts(addresses, signer), deployBlock: receipt?.blockNumber ?? 0 };
}

/** One `Deposited` event of the vault, with where it sits on the chain. */
export interface DepositedEvent {
  from: string;
  ledgerAccount: string;
  amount: bigint;
  depositId: bigint;
  blockNumber: number;
  blockHash: string;
  transactionHash: string;
  /** Position in its block: with the tx hash, the event's identity. */
  logIndex: number;
}

/** One `Withdrawn` event of the vault. */
export interface WithdrawnEvent {
  to: string;
  amount: bigint;
  withdrawalId: string;
  blockNumber: number;
  blockHash: string;
  transactionHash: string;
  logIndex: number;
}

function logsFromVault(log: Log, vaultAddress: string): boolean {
  return getAddress(log.address) === getAddress(vaultAddress) && !log.removed;
}

/** The vault's `Deposited` events in blocks [fromBlock, toBlock], in chain order. */
export async function queryDeposits(provider: Provider, vaultAddress: string, fromBlock: number, toBlock: number): Promise<DepositedEvent[]> {
  const iface = vaultInterface();
  const topic = iface.getEvent('Deposited')!.topicHash;
  const logs = await provider.getLogs({ address: getAddress(vaultAddress), topics: [topic], fromBlock, toBlock });
  return logs
    .filter((log) => logsFromVault(log, vaultAddress))
    .map((log) => {
      const parsed = iface.parseLog({ topics: [...log.topics], data: log.data })!;
      return {
        from: getAddress(parsed.args.from as string),
        ledgerAccount: getAddress(parsed.args.ledgerAccount as string),
        amount: parsed.args.amount as bigint,
        depositId: parsed.args.depositId as bigint,
        blockNumber: log.blockNumber,
        blockHash: log.blockHash,
        transactionHash: log.transactionHash,
        logIndex: log.index,
      };
    })
    .sort((a, b) => a.blockNumber - b.blockNumber || a.logIndex - b.logIndex);
}

/** The vault's `Withdrawn` events for one withdrawal id (at most one on a canonical chain). */
export async function queryWithdrawals(
  provider: Provider,
  vaultAddress: string,
  withdrawalId: string,
  fromBlock = 0,
  toBlock: number | 'latest' = 'latest',
): Promise<WithdrawnEvent[]> {
  const iface = vaultInterface();
  const topic = iface.getEvent('Withdrawn')!.topicHash;
  const logs = await provider.getLogs({ address: getAddress(vaultAddress), topics: [topic, null, withdrawalId], fromBlock, toBlock });
  return logs
    .filter((log) => logsFromVault(log, vaultAddress))
    .map((log) => {
      const parsed = iface.parseLog({ topics: [...log.topics], data: log.data })!;
      return {
        to: getAddress(parsed.args.to as string),
        amount: parsed.args.amount as bigint,
        withdrawalId: parsed.args.withdrawalId as string,
        blockNumber: log.blockNumber,
        blockHash: log.blockHash,
        transactionHash: log.transactionHash,
        logIndex: log.index,
      };
    });
}

/**
 * The revert data behind an ethers error. ethers finds it for `eth_call`; for `eth_estimateGas`
 * ganache nests it as `error.data.result`, which ethers reports as "missing revert data".
 */
function revertData(error: unknown): string | null {
  const failure = error as { data?: unknown; info?: { error?: { data?: unknown } } } | null;
  const candidates: unknown[] = [failure?.data, failure?.info?.error?.data, (failure?.info?.error?.data as { result?: unknown } | undefined)?.result];
  for (const candidate of candidates) if (typeof candidate === 'string' && /^0x[0-9a-fA-F]{8,}$/.test(candidate)) return candidate;
  return null;
}

/**
 * The name of the contract error (custom error or revert reason) behind an ethers error, when the
 * chain gave one: e.g. `InsufficientBalance`, `AlreadyWithdrawn`; 'reverted' for a revert without
 * data. Null for anything that is not a revert (transport errors, nonce and gas problems).
 */
export function revertReason(error: unknown): string | null {
  const failure = error as { code?: string; revert?: { name?: string } | null; reason?: string | null } | null;
  if (failure?.code !== 'CALL_EXCEPTION') return null;
  if (failure.revert?.name) return failure.revert.name;
  const data = revertData(error);
  if (data) {
    for (const iface of [vaultInterface(), tokenInterface()]) {
      try {
        const parsed = iface.parseError(data);
        if (parsed) return parsed.name === 'Error' ? String(parsed.args[0]) : parsed.name;
      } catch {
        // not this contract's error
      }
    }
  }
  return failure.reason ?? 'reverted';
}
