import { Controller, Get, Header } from '@nestjs/common';
import { checkHealth, type HealthReport } from '@commune/service';
import { ApiExcludeEndpoint, ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { PrismaService } from '../database/prisma.service.js';
import { RedisConnections } from '../redis/redis.module.js';
import { Metrics } from './metrics.js';

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(private readonly prisma: PrismaService, private readonly redis: RedisConnections, private readonly metrics: Metrics) {}

  /**
   * 200 `ok` when PostgreSQL and Redis answer within 2 s; otherwise 503 `degraded`, naming what
   * is down (`down`) and its error code. The process keeps serving meanwhile: requests that need
   * the missing dependency fail EUNAVAILABLE, and the pools reconnect when it is back.
   */
  @Get('health')
  @ApiOperation({ summary: 'Postgres and Redis reachability' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] }, postgres: { type: 'string', enum: ['ok'] }, redis: { type: 'string', enum: ['ok'] }, down: { type: 'array', items: { type: 'string' } } } } })
  @ApiServiceUnavailableResponse({ description: 'degraded: Postgres or Redis does not answer (named in `down`, with its error code)' })
  async health(): Promise<HealthReport> {
    return checkHealth(() => this.prisma.pool.query('SELECT 1'), () => this.redis.command.ping());
  }

  @Get('metrics')
  @ApiExcludeEndpoint()
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
