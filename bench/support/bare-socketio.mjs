// The baseline of bench/connections.mjs: a bare socket.io server, the scheduler's own copy and
// version of socket.io (resolved from apps/scheduler), with the transport options the scheduler
// uses (websocket only, no per-message deflate, the same maxHttpBufferSize) and a `/worker`
// namespace that accepts every hello and answers every task:request with an empty grant. No
// NestJS, no Redis adapter, no handlers of the scheduler's own: what socket.io itself costs.
// Prints `listening <port>` on stdout once it accepts connections; answers `stats` over IPC, and
// `hint` by sending 'work:available' to every connection.
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Limits } from '@commune/protocol';
import { root } from './common.mjs';

const { Server } = createRequire(join(root, 'apps/scheduler/package.json'))('socket.io');

const port = Number(process.argv[2] ?? 0);
const http = createServer();
const server = new Server(http, { transports: ['websocket'], perMessageDeflate: false, maxHttpBufferSize: Limits.maxMessageBytes, cors: { origin: true } });
let connected = 0;
server.of('/worker').on('connection', (socket) => {
  connected++;
  socket.on('task:request', (_request, ack) => {
    if (typeof ack === 'function') ack({ tasks: [] });
  });
  socket.on('disconnect', () => connected--);
});
http.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${http.address().port}\n`));
process.on('message', (message) => {
  if (message?.cmd === 'stats') process.send({ type: 'stats', connected, heapUsedMb: process.memoryUsage().heapUsed / 2 ** 20 });
  // The baseline of the scheduler's hint storm: the same broadcast, every connection answers it with a request.
  if (message?.cmd === 'hint') {
    server.of('/worker').emit('work:available');
    process.send({ type: 'hint-sent' });
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
