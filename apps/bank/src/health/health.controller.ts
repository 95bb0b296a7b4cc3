import { Controller, Get, Header, HttpException, HttpStatus } from '@nestjs/common';
import { ApiExcludeEndpoint, ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { PrismaService } from '../database/prisma.service.js';
import { RedisConnections } from '../redis/redis.module.js';
import { Metrics } from './metrics.js';

@ApiTags('operations')
@Controller()
export class HealthController {
  constructor(private readonly prisma: PrismaService, private readonly redis: RedisConnections, private readonly metrics: Metrics) {}

  /** 200 when Postgres and Redis answer; 503 naming the one that does not. */
  @Get('health')
  @ApiOperation({ summary: 'Postgres and Redis reachability' })
  @ApiOkResponse({ schema: { type: 'object', properties: { status: { type: 'string', enum: ['ok'] }, postgres: { type: 'string', enum: ['ok'] }, redis: { type: 'string', enum: ['ok'] } } } })
  @ApiServiceUnavailableResponse({ description: 'Postgres or Redis does not answer' })
  async health(): Promise<{ status: 'ok'; postgres: 'ok'; redis: 'ok' }> {
    const [postgres, redis] = await Promise.allSettled([this.prisma.pool.query('SELECT 1'), this.redis.command.ping()]);
    if (postgres.status === 'rejected' || redis.status === 'rejected') {
      throw new HttpException(
        { status: 'unavailable', postgres: postgres.status === 'fulfilled' ? 'ok' : String(postgres.reason), redis: redis.status === 'fulfilled' ? 'ok' : String(redis.reason) },
        HttpStatus.SERVICE_UNAVAILABLE,
      );
    }
    return { status: 'ok', postgres: 'ok', redis: 'ok' };
  }

  @Get('metrics')
  @ApiExcludeEndpoint()
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
