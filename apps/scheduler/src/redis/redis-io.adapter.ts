import type { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Server, ServerOptions } from 'socket.io';
import type { Redis } from 'ioredis';
import { Metrics } from '../health/metrics.js';
import { createBoundedParser } from './bounded-parser.js';
import { InboundBudget, type BudgetedSocket } from './inbound-budget.js';

/**
 * socket.io over WebSocket only (no polling, so replicas need no sticky sessions), with the Redis
 * adapter so an event emitted on one replica reaches sockets on every replica. Inbound messages
 * are bounded by the transport (maxHttpBufferSize: larger ones close the connection before they
 * are parsed), then by the bounded parser (one linear pass before JSON.parse: too many values or
 * attachments, or a deep binary packet, close the connection, containers nested too deep are cut so the handler answers
 * ETOODEEP without anything deeper being built), and large ones by one InboundBudget shared by
 * every namespace (/client and /worker).
 */
export class RedisIoAdapter extends IoAdapter {
  readonly budget = new InboundBudget();
  private readonly nestApp: INestApplicationContext;

  constructor(app: INestApplicationContext, private readonly publisher: Redis, private readonly subscriber: Redis, private readonly maxMessageBytes: number, private readonly key: string) {
    super(app);
    this.nestApp = app;
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    const metrics = this.nestApp.get(Metrics, { strict: false });
    const parser = createBoundedParser({
      refused: (reason) => metrics.socketPacketsRefused.inc({ reason }),
      cut: (containers) => metrics.socketContainersCut.inc(containers),
    });
    const server = super.createIOServer(port, {
      ...(options as ServerOptions),
      transports: ['websocket'],
      maxHttpBufferSize: this.maxMessageBytes,
      perMessageDeflate: false,
      cors: { origin: true },
      parser,
    }) as Server;
    server.adapter(createAdapter(this.publisher, this.subscriber, { key: this.key }));
    return server;
  }

  /** Every socket of every gateway gets the budget before its gateway's handlers are bound. */
  override bindClientConnect(server: { on(event: string, listener: (socket: BudgetedSocket) => void): unknown }, callback: (socket: BudgetedSocket) => void): void {
    server.on('connection', (socket: BudgetedSocket) => {
      this.budget.guard(socket);
      callback(socket);
    });
  }
}
