import { Controller, Get, Header, HttpException, HttpStatus } from '@nestjs/common';
import { checkHealth, type HealthReport } from '@commune/service';
import { PrismaService } from '../database/prisma.service.js';
import { RedisConnections } from '../redis/redis.module.js';
import { Metrics } from './metrics.js';
import { ReplicaLifecycle } from './replica-lifecycle.js';

@Controller()
export class HealthController {
  constructor(
    private readonly prisma: PrismaService,
    private readonly redis: RedisConnections,
    private readonly metrics: Metrics,
    private readonly lifecycle: ReplicaLifecycle,
  ) {}

  /**
   * Readiness. 200 `ok` when PostgreSQL and Redis answer within 2 s; otherwise 503 `degraded`,
   * naming what is down (`down`) and its error code. The process keeps serving meanwhile:
   * requests that need the missing dependency fail EUNAVAILABLE, and the pools reconnect when it
   * is back. 503 `draining` once the replica is shutting down (ReplicaLifecycle), so load
   * balancers and Kubernetes stop sending it connections while it hands its own to the others.
   */
  @Get('health')
  async health(): Promise<HealthReport> {
    if (!this.lifecycle.serving) throw new HttpException({ status: 'draining', phase: this.lifecycle.phase.name }, HttpStatus.SERVICE_UNAVAILABLE);
    return checkHealth(() => this.prisma.pool.query('SELECT 1'), () => this.redis.command.ping());
  }

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4')
  async metricsText(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}
