/**
 * Which chain the bridge's state is about. Everything the bridge keeps that comes from the chain
 * (the deposit cursor and its anchors, which deposits were credited, the nonces and signed
 * transactions of open withdrawals) is true only of one chain: the one with this chain id and
 * this genesis block. A node that answers with another genesis is another chain, whatever its
 * chain id, contract addresses or height say: a dev chain started afresh (ganache's genesis
 * carries its start time), or a node pointed at the wrong network. Pure decisions; the guard
 * (chain-identity.service.ts) does the I/O.
 */

/** What the node says it is. */
export interface ChainIdentity {
  chainId: number;
  /** Hash of block 0, lower case. */
  genesisHash: string;
  /** The vault this bank watches, checksummed. */
  vault: string;
}

/**
 * How deposits on the recorded chain are keyed in the ledger (the mint's idempotency key):
 * - `legacy`: `deposit:<chainId>:<txHash>:<logIndex at first sighting>`, the key banks used before
 *   they recorded the chain's identity. Kept for the chain such a bank already credited deposits
 *   on, so a deposit it had minted but not yet recorded when it stopped is still found under its
 *   key (the ledger answers "already done").
 * - `chain`: `deposit:<chainId>:<genesisHash>:<txHash>:<ordinal>`: the genesis keeps a fresh dev
 *   chain's deposits apart from the old one's (a dev chain replays the same accounts, nonces and
 *   calldata, so its transactions can have the very same hashes), and the ordinal (the event's
 *   place among the vault's Deposited events of its transaction) does not move when a
 *   reorganisation mines the transaction again elsewhere, as the log index does.
 */
export type DepositKeyFormat = 'legacy' | 'chain';

export interface RecordedChain extends ChainIdentity {
  depositKeys: DepositKeyFormat;
  /** Dev chains this bank has moved on from. */
  resets: number;
}

/** What the bridge's state says about the chain before the identity was recorded (a bank upgraded in place). */
export type LegacyState =
  | { kind: 'none' }
  /** A block the bank read as final (its cursor, or its newest credited deposit), and whether the node still has it. */
  | { kind: 'block'; blockNumber: number; stillCanonical: boolean };

export type ChainVerdict =
  /** The chain the state is about: go on. */
  | { kind: 'same' }
  /** Nothing recorded yet: record this chain, taking over whatever state the bank had. */
  | { kind: 'record'; depositKeys: DepositKeyFormat; adoptLegacy: boolean }
  /** The same chain, another vault (a new deployment of the contracts): record the vault; it has its own cursor. */
  | { kind: 'new-vault' }
  /** A new dev chain: reset the chain-derived state, keep the ledger, record the new chain. */
  | { kind: 'reset'; reason: string }
  /** Another chain where the operator did not declare a dev chain: touch nothing, stop the bridge. */
  | { kind: 'halt'; reason: string };

const describe = (chain: Pick<ChainIdentity, 'chainId' | 'genesisHash'>) => `chain ${chain.chainId} with genesis ${chain.genesisHash}`;

/**
 * Compares the node's identity with the recorded one. `devChain` is the operator's declaration
 * (BRIDGE_DEV_CHAIN) that a changed chain is a dev chain started afresh, whose old state may be
 * dropped; without it a changed genesis stops the bridge instead (a production node pointed at the
 * wrong network must not make the bank forget what it owes).
 */
export function judgeChain(recorded: RecordedChain | null, current: ChainIdentity, devChain: boolean, legacy: LegacyState): ChainVerdict {
  if (recorded === null) {
    if (legacy.kind === 'none') return { kind: 'record', depositKeys: 'chain', adoptLegacy: false };
    if (legacy.stillCanonical) return { kind: 'record', depositKeys: 'legacy', adoptLegacy: true };
    const reason = `block ${legacy.blockNumber}, which this bank read as final before it recorded its chain's identity, is not on ${describe(current)}`;
    // Without a recorded genesis a real chain's deep reorganisation looks the same: the state is
    // taken over and the deposit watcher reports and re-anchors (a dev chain's is dropped instead).
    if (devChain) return { kind: 'reset', reason };
    return { kind: 'record', depositKeys: 'legacy', adoptLegacy: true };
  }
  if (recorded.chainId !== current.chainId || recorded.genesisHash !== current.genesisHash) {
    const reason = `the node at the bridge's RPC URL is ${describe(current)}; the bridge's state is about ${describe(recorded)}`;
    return devChain ? { kind: 'reset', reason } : { kind: 'halt', reason };
  }
  if (recorded.vault.toLowerCase() !== current.vault.toLowerCase()) return { kind: 'new-vault' };
  return { kind: 'same' };
}

/** The ledger key of one deposit, fixed when the bank first sees it (and stored with it). */
export function depositLedgerKey(
  format: DepositKeyFormat,
  event: { chainId: number; genesisHash: string; transactionHash: string; logIndex: number; ordinal: number },
): string {
  const txHash = event.transactionHash.toLowerCase();
  return format === 'legacy'
    ? `deposit:${event.chainId}:${txHash}:${event.logIndex}`
    : `deposit:${event.chainId}:${event.genesisHash.toLowerCase()}:${txHash}:${event.ordinal}`;
}

/**
 * Each event's ordinal: its place among the events of the same transaction in `events` (which
 * hold whole blocks, so every event of a transaction). A transaction mined again after a
 * reorganisation emits its deposits in the same order, so (transaction, ordinal) names the same
 * deposit wherever the block and log index land.
 */
export function withOrdinals<E extends { transactionHash: string }>(events: readonly E[]): Array<{ event: E; ordinal: number }> {
  const seen = new Map<string, number>();
  return events.map((event) => {
    const txHash = event.transactionHash.toLowerCase();
    const ordinal = seen.get(txHash) ?? 0;
    seen.set(txHash, ordinal + 1);
    return { event, ordinal };
  });
}
