import type { INestApplicationContext } from '@nestjs/common';
import { IoAdapter } from '@nestjs/platform-socket.io';
import { createAdapter } from '@socket.io/redis-adapter';
import type { Server, ServerOptions } from 'socket.io';
import type { Redis } from 'ioredis';

/**
 * socket.io over WebSocket only (no polling, so replicas need no sticky sessions), with the Redis
 * adapter so an event emitted on one replica reaches sockets on every replica.
 */
export class RedisIoAdapter extends IoAdapter {
  constructor(app: INestApplicationContext, private readonly publisher: Redis, private readonly subscriber: Redis, private readonly maxMessageBytes: number, private readonly key: string) {
    super(app);
  }

  override createIOServer(port: number, options?: ServerOptions): Server {
    const server = super.createIOServer(port, {
      ...(options as ServerOptions),
      transports: ['websocket'],
      maxHttpBufferSize: this.maxMessageBytes,
      perMessageDeflate: false,
      cors: { origin: true },
    }) as Server;
    server.adapter(createAdapter(this.publisher, this.subscriber, { key: this.key }));
    return server;
  }
}
