import { io, type Socket } from 'socket.io-client';
import {
  Namespaces, type ClientToSchedulerEvents, type SchedulerToClientEvents, type SchedulerToWorkerEvents, type WorkerToSchedulerEvents,
} from '@commune/protocol';

export type TestClientSocket = Socket<SchedulerToClientEvents, ClientToSchedulerEvents>;
export type TestWorkerSocket = Socket<SchedulerToWorkerEvents, WorkerToSchedulerEvents>;

export async function connectClient(baseUrl: string): Promise<TestClientSocket> {
  const socket: TestClientSocket = io(baseUrl + Namespaces.client, { transports: ['websocket'], forceNew: true });
  await connected(socket);
  return socket;
}

export async function connectWorker(baseUrl: string, workerId: string, sandboxes = 1): Promise<TestWorkerSocket> {
  const socket: TestWorkerSocket = io(baseUrl + Namespaces.worker, {
    transports: ['websocket'],
    forceNew: true,
    auth: { workerId, sandboxes, capabilities: {} },
  });
  await connected(socket);
  return socket;
}

function connected(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('socket did not connect within 5 s')), 5000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect_error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** emitWithAck with a bound. */
export async function request<T>(socket: Socket, event: string, payload: unknown, timeoutMs = 5000): Promise<T> {
  return (await socket.timeout(timeoutMs).emitWithAck(event, payload)) as T;
}
