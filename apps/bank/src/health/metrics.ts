import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

/** Prometheus metrics of this bank process, served at /metrics. */
@Injectable()
export class Metrics {
  readonly registry = new Registry();
  readonly transfers = new Counter({ name: 'commune_bank_transfers_total', help: 'Ledger transfers committed, by kind', labelNames: ['kind'], registers: [this.registry] });
  readonly payments = new Counter({ name: 'commune_bank_payments_total', help: 'Payments posted out of holds (each key once)', registers: [this.registry] });
  readonly replays = new Counter({ name: 'commune_bank_idempotent_replays_total', help: 'Requests answered with the first outcome of their idempotency key', registers: [this.registry] });
  readonly refusals = new Counter({ name: 'commune_bank_refusals_total', help: 'State changes refused, by error code', labelNames: ['code'], registers: [this.registry] });
  readonly transactionRetries = new Counter({ name: 'commune_bank_transaction_retries_total', help: 'Ledger transactions retried after a serialization failure or deadlock', registers: [this.registry] });
  readonly holdsExpired = new Counter({ name: 'commune_bank_holds_expired_total', help: 'Holds released by expire-holds', registers: [this.registry] });
  readonly transactionSeconds = new Histogram({
    name: 'commune_bank_transaction_seconds',
    help: 'Duration of ledger transactions, by operation',
    labelNames: ['operation'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'commune_bank_' });
  }
}
