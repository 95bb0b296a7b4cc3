import { Injectable } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { Metrics } from '../health/metrics.js';

/** The bridge's Prometheus metrics, on the bank's registry (/metrics). */
@Injectable()
export class BridgeMetrics {
  readonly depositsCredited: Counter;
  readonly withdrawals: Counter;
  readonly depositCursor: Gauge;
  readonly deepReorgs: Counter;
  readonly chainErrors: Counter;
  readonly devChainResets: Counter;
  readonly halted: Gauge;

  constructor(metrics: Metrics) {
    const registers = [metrics.registry];
    this.depositsCredited = new Counter({ name: 'commune_bank_bridge_deposits_credited_total', help: 'Deposited events credited to the ledger', registers });
    this.withdrawals = new Counter({ name: 'commune_bank_bridge_withdrawals_total', help: 'Withdrawals by outcome (requested, sent, confirmed, failed)', labelNames: ['outcome'], registers });
    this.depositCursor = new Gauge({ name: 'commune_bank_bridge_deposit_cursor_block', help: 'Last block the deposit watcher has read (final)', registers });
    this.deepReorgs = new Counter({ name: 'commune_bank_bridge_deep_reorgs_total', help: 'Reorganisations deeper than the confirmations (a block read as final was replaced), one per incident', registers });
    this.devChainResets = new Counter({ name: 'commune_bank_bridge_dev_chain_resets_total', help: 'Times the bridge moved to a new dev chain (BRIDGE_DEV_CHAIN) and reset its chain state', registers });
    this.halted = new Gauge({ name: 'commune_bank_bridge_halted', help: '1 while the bridge stands still because the node is another chain than the one its state is about', registers });
    this.chainErrors = new Counter({ name: 'commune_bank_bridge_chain_errors_total', help: 'Bridge runs that failed talking to the chain or the ledger', labelNames: ['task'], registers });
  }
}
