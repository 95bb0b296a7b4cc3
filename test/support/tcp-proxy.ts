import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A small round-robin TCP load balancer for tests, standing in for the nginx or Ingress in front
 * of scheduler replicas. Each accepted connection is piped, bytes untouched (WebSocket upgrades
 * included), to the next backend in turn that is ready:
 * - with `healthPath`, every backend's readiness is polled (`GET healthPath`, 2xx = ready), as
 *   Kubernetes readiness probes or a load balancer's health checks do: a draining replica (503)
 *   or a dead one leaves the rotation within about `healthIntervalMs`;
 * - a backend that refuses the TCP connection is skipped for the next one (nginx's
 *   proxy_next_upstream error), at most once per backend, before the client is dropped.
 * Connections already open stay on their backend until either side closes them.
 */
export interface TcpProxy {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  /** Connections piped to each backend so far (by backend URL). */
  readonly routed: Map<string, number>;
  /** Whether each backend is in the rotation now. */
  ready(backend: string): boolean;
  close(): Promise<void>;
}

export interface TcpProxyOptions {
  /** Backend base URLs (http://host:port). */
  backends: string[];
  /** Readiness path polled on every backend (e.g. '/health'); without it every backend is always in the rotation. */
  healthPath?: string;
  healthIntervalMs?: number;
  /** A health check not answered within this long counts as not ready. */
  healthTimeoutMs?: number;
}

export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const backends = options.backends.map((url) => new URL(url));
  const readiness = new Map(options.backends.map((url) => [url, true]));
  const routed = new Map(options.backends.map((url) => [url, 0]));
  const open = new Set<Socket>();
  let next = 0;
  let closed = false;

  const healthIntervalMs = options.healthIntervalMs ?? 100;
  const healthTimeoutMs = options.healthTimeoutMs ?? 1000;
  let healthTimer: NodeJS.Timeout | undefined;
  const checkHealth = async (): Promise<void> => {
    await Promise.all(options.backends.map(async (url) => {
      const answer = await fetch(new URL(options.healthPath!, url), { signal: AbortSignal.timeout(healthTimeoutMs) }).catch(() => null);
      await answer?.body?.cancel().catch(() => undefined);
      readiness.set(url, answer !== null && answer.ok);
    }));
    if (!closed) healthTimer = setTimeout(() => void checkHealth(), healthIntervalMs);
  };
  if (options.healthPath !== undefined) await checkHealth();

  /** Pipes `client` to the next ready backend, trying each backend at most once. */
  const route = (client: Socket, tried: number): void => {
    if (closed || client.destroyed) return;
    if (tried >= backends.length) {
      client.destroy();
      return;
    }
    let index = -1;
    for (let i = 0; i < backends.length; i++) {
      const candidate = (next + i) % backends.length;
      if (readiness.get(options.backends[candidate]!)) {
        index = candidate;
        break;
      }
    }
    // No backend is ready: try them in turn anyway (health checks lag behind a replica coming back).
    if (index === -1) index = next % backends.length;
    next = index + 1;
    const backend = backends[index]!;
    const upstream = connect({ host: backend.hostname, port: Number(backend.port) });
    open.add(upstream);
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      routed.set(options.backends[index]!, (routed.get(options.backends[index]!) ?? 0) + 1);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on('error', () => {
      open.delete(upstream);
      if (!connected) {
        readiness.set(options.backends[index]!, false);
        route(client, tried + 1);
      } else {
        client.destroy();
      }
    });
    upstream.on('close', () => {
      open.delete(upstream);
      if (connected) client.destroy();
    });
    client.on('close', () => upstream.destroy());
  };

  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    open.add(client);
    client.on('error', () => client.destroy());
    client.on('close', () => open.delete(client));
    route(client, 0);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    routed,
    ready: (backend) => readiness.get(backend) ?? false,
    async close() {
      closed = true;
      clearTimeout(healthTimer);
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
