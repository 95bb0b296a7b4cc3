import { Controller, Get, Header } from '@nestjs/common';
import { checkHealth, type HealthReport } from '@commune/service';
import { PrismaService } from '../database/prisma.service.js';
import { RedisConnections } from '../redis/redis.module.js';
import { Metrics } from './metrics.js';

@Controller()
export class HealthController {
  constructor(private readonly prisma: PrismaService, private readonly redis: RedisConnections, private readonly metrics: Metrics) {}

  /**
   * 200 `ok` when PostgreSQL and Redis answer within 2 s; otherwise 503 `degraded`, naming what
   * is down (`down`) and its error code. The process keeps serving meanwhile: requests that need
   * the missing dependency fail EUNAVAILABLE, and the pools reconnect when it is back.
   */
  @Get('health')
  async health(): Promise<HealthReport> {
    return checkHealth(() => this.prisma.pool.query('SELECT 1'), () => this.redis.command.ping());
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
