import { FetchRequest, JsonRpcProvider, Network } from 'ethers';

export interface ConnectProviderOptions {
  /** Known chain id: the provider then never probes the network (no retry loop while the node is down). */
  chainId?: number | bigint;
  /** Any one JSON-RPC call is abandoned after this long (ethers' default is 5 minutes). */
  timeoutMs?: number;
  pollingIntervalMs?: number;
}

/**
 * A JSON-RPC provider for the bridge: no response cache (a confirmation count must see the newest
 * block), no batching (one failed call must not fail its neighbours), a bounded wait per call,
 * and, when the chain id is known, no network probing.
 */
export function connectProvider(url: string, options: ConnectProviderOptions = {}): JsonRpcProvider {
  const network = options.chainId === undefined ? undefined : Network.from(BigInt(options.chainId));
  const request = new FetchRequest(url);
  request.timeout = options.timeoutMs ?? 30_000;
  return new JsonRpcProvider(request, network, {
    staticNetwork: network ?? null,
    cacheTimeout: -1,
    batchMaxCount: 1,
    pollingInterval: options.pollingIntervalMs ?? 1000,
  });
}
