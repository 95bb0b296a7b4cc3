import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** Prometheus metrics of this replica, served at /metrics. */
@Injectable()
export class Metrics {
  readonly registry = new Registry();
  readonly slicesLeased = new Counter({ name: 'commune_slices_leased_total', help: 'Slices handed to workers', registers: [this.registry] });
  readonly slicesReturned = new Counter({ name: 'commune_slices_returned_total', help: 'Slices put back (returned, expired, worker gone)', registers: [this.registry] });
  readonly resultsAccepted = new Counter({ name: 'commune_results_accepted_total', help: 'Slice results stored', registers: [this.registry] });
  readonly resultsRefused = new Counter({ name: 'commune_results_refused_total', help: 'Slice results refused (not leased, duplicate)', registers: [this.registry] });
  readonly sliceFailures = new Counter({ name: 'commune_slice_failures_total', help: 'Failed slice attempts', registers: [this.registry] });
  readonly jobsDeployed = new Counter({ name: 'commune_jobs_deployed_total', help: 'Jobs accepted', registers: [this.registry] });
  readonly moduleSourcesSent = new Counter({ name: 'commune_module_sources_sent_total', help: 'Module sources (job.requires()) sent to workers: once per worker connection and source', registers: [this.registry] });
  readonly leaseCapRefusals = new Counter({ name: 'commune_lease_cap_refusals_total', help: 'Task requests refused because the worker held its cap of leased slices (ELEASECAP)', registers: [this.registry] });
  readonly workerEventsRefused = new Counter({ name: 'commune_worker_events_refused_total', help: 'Console/custom events refused: their slice is not leased to the sending worker', registers: [this.registry] });
  readonly resultsFailedBounds = new Counter({ name: 'commune_results_out_of_bounds_total', help: 'Slice results counted as failed attempts for being too deep (ETOODEEP) or too big (ERESULTTOOBIG)', registers: [this.registry] });
  readonly paymentOutliers = new Counter({ name: 'commune_payment_outliers_total', help: 'Paid slices whose reported time exceeded the job peers\' median by the outlier factor (paid at the bound)', registers: [this.registry] });
  readonly paymentTimeClamped = new Counter({ name: 'commune_payment_time_clamped_total', help: 'Paid slices whose reported time exceeded what the scheduler observed (lease to result) and was bounded', registers: [this.registry] });
  readonly unpaidWorkers = new Counter({ name: 'commune_workers_unpaid_total', help: 'Worker connections that stopped being paid after too many payment outliers', registers: [this.registry] });
  readonly socketPacketsRefused = new Counter({
    name: 'commune_socket_packets_refused_total',
    help: 'socket.io packets refused before parsing, their connection closed: too many values (nodes), too many binary attachments (attachments), a binary packet nested too deep (depth), brackets or strings that do not close (malformed)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly socketContainersCut = new Counter({ name: 'commune_socket_containers_cut_total', help: 'Arrays/objects nested too deep in a socket.io packet, cut before parsing (the handler then answers ETOODEEP)', registers: [this.registry] });
  readonly workersConnected = new Gauge({ name: 'commune_workers_connected', help: 'Workers connected to this replica', registers: [this.registry] });
  readonly draining = new Gauge({ name: 'commune_replica_draining', help: '1 while this replica drains before it closes (SIGTERM/SIGINT), else 0', registers: [this.registry] });
  readonly drainDisconnects = new Counter({
    name: 'commune_drain_disconnects_total',
    help: 'Sockets this replica disconnected while draining, by namespace (worker, client); they reconnect to the other replicas',
    labelNames: ['namespace'] as const,
    registers: [this.registry],
  });
  readonly slicesKeptForReconnect = new Counter({
    name: 'commune_slices_kept_for_reconnect_total',
    help: 'Leased slices left with workers that went away while this replica drained or closed (taken when they reconnect elsewhere, else put back at their lease deadline)',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'commune_scheduler_' });
  }
}
