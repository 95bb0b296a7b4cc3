import { connect, createServer, type Socket } from 'node:net';

/**
 * A TCP relay in front of one HTTP service (keep-alive connections, bytes untouched) that can hold
 * the service's answers: while holding, what the service sends back is kept from its clients, so
 * a test can let a request be done by the service (its transaction committed) and then kill the
 * service before the client learns the outcome. The service may be restarted on the same port
 * behind the gate; new connections reach the new process.
 */
export interface AnswerGate {
  /** http://127.0.0.1:<port>: give this to the clients instead of the service's own URL. */
  readonly url: string;
  /**
   * Holds every answer from now on until release(); resolves with the first request line (e.g.
   * `POST /holds/h_1/payments HTTP/1.1`) matching `request` whose answer started with `status`
   * (e.g. `HTTP/1.1 200`), held. Bounded by `timeoutMs`.
   */
  holdUntilAnswered(request: RegExp, status: RegExp, timeoutMs: number): Promise<string>;
  /** Stops holding and closes every relayed connection (clients see them reset; answers held are dropped). */
  release(): void;
  close(): Promise<void>;
}

export async function startAnswerGate(target: { host: string; port: number }): Promise<AnswerGate> {
  const connections = new Set<{ client: Socket; service: Socket }>();
  let holding = false;
  let waiter: { request: RegExp; status: RegExp; resolve: (line: string) => void } | null = null;
  const server = createServer((client) => {
    const service = connect(target.port, target.host);
    const pair = { client, service };
    connections.add(pair);
    // Request lines sent on this connection whose answers have not started yet (HTTP/1.1 answers come in order).
    const pending: string[] = [];
    client.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString('latin1').split('\r\n')) if (/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(line)) pending.push(line);
      service.write(chunk);
    });
    service.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      const answered = /^HTTP\/1\.[01] \d{3}/.test(text) ? pending.shift() : undefined;
      if (!holding) {
        client.write(chunk);
        return;
      }
      if (answered && waiter && waiter.request.test(answered) && waiter.status.test(text)) {
        const { resolve } = waiter;
        waiter = null;
        resolve(answered);
      }
    });
    const end = () => {
      connections.delete(pair);
      client.destroy();
      service.destroy();
    };
    client.on('error', end).on('close', end);
    service.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as { port: number };
  const dropAll = () => {
    for (const { client, service } of connections) {
      client.destroy();
      service.destroy();
    }
    connections.clear();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    holdUntilAnswered(request, status, timeoutMs) {
      holding = true;
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`no answer to ${request} with ${status} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = { request, status, resolve: (line) => { clearTimeout(timer); resolve(line); } };
      });
    },
    release() {
      holding = false;
      waiter = null;
      dropAll();
    },
    close() {
      holding = false;
      dropAll();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
