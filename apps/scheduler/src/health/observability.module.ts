import { Global, Module } from '@nestjs/common';
import { HealthController } from './health.controller.js';
import { Metrics } from './metrics.js';
import { ReplicaLifecycle } from './replica-lifecycle.js';

@Global()
@Module({ controllers: [HealthController], providers: [Metrics, ReplicaLifecycle], exports: [Metrics, ReplicaLifecycle] })
export class ObservabilityModule {}
