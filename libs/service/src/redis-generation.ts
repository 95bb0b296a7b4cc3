import { randomUUID } from 'node:crypto';

/** What the watch needs of an ioredis client (kept structural: this library does not depend on ioredis). */
export interface GenerationRedis {
  readonly status: string;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, mode: 'NX'): Promise<'OK' | null>;
  on(event: 'ready', listener: () => void): unknown;
  off(event: 'ready', listener: () => void): unknown;
}

export interface RedisGenerationOptions {
  /** The generation key (one per service and prefix, e.g. `${prefix}:generation`). */
  key: string;
  /** How often the key is checked besides each reconnect ('ready'); covers a FLUSHALL without a disconnect. */
  intervalMs?: number;
  /** Where failures of a recovery listener go (it is run again at the next check). */
  warn?: (message: string) => void;
}

/** Why recovery listeners run: Redis came up empty at boot, or lost its data while this process ran. */
export type RedisLossReason = 'boot' | 'loss';

/**
 * Tells a service promptly that Redis lost everything (a restart with nothing on disk, a
 * FLUSHALL, a failover to an empty replica), so it can rebuild what lived there (BullMQ
 * schedules, dispatch state) from PostgreSQL instead of waiting for a periodic job that itself
 * lived in Redis.
 *
 * A random generation is written under `key` (SET NX) at start. On every reconnect ('ready') and
 * every `intervalMs`, the key is read: missing means Redis lost its data (a new generation is
 * written, first writer wins); a value other than the one this process knows means another
 * process saw the loss first. Either way the listeners run, one run at a time; a listener that
 * throws (PostgreSQL down, Redis gone again) makes the next check run them all again, until they
 * all succeed. Listeners must be idempotent: every process of a deployment runs them.
 */
export class RedisGeneration {
  private known: string | null = null;
  private readonly listeners: Array<(reason: RedisLossReason) => Promise<unknown>> = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** A recovery is owed (a loss was seen and its listeners have not all succeeded yet). */
  private owed: RedisLossReason | null = null;
  private stopped = false;
  private started: Promise<boolean> | null = null;
  private readonly onReady = () => void this.check();
  /** Losses seen since start (for metrics and tests). */
  losses = 0;

  constructor(private readonly redis: GenerationRedis, private readonly options: RedisGenerationOptions) {}

  /** Registers a recovery; it runs after every loss (and at start when Redis came up empty). */
  onLoss(listener: (reason: RedisLossReason) => Promise<unknown>): void {
    this.listeners.push(listener);
  }

  /**
   * Writes (or reads) the generation and starts watching. Returns true when this process found
   * Redis without a generation (first boot, or Redis lost its data while the service was down):
   * the listeners then run once, as for a loss, so state that lived in Redis is rebuilt at boot.
   * Calling it again (another module of the same process) returns the first call's answer.
   */
  start(): Promise<boolean> {
    this.started ??= this.startOnce();
    return this.started;
  }

  private async startOnce(): Promise<boolean> {
    this.redis.on('ready', this.onReady);
    this.timer = setInterval(() => void this.check(), this.options.intervalMs ?? 1000);
    this.timer.unref();
    const fresh = randomUUID();
    const created = (await this.redis.set(this.options.key, fresh, 'NX')) === 'OK';
    this.known = created ? fresh : await this.redis.get(this.options.key);
    if (created) {
      this.owed = 'boot';
      void this.check();
    }
    return created;
  }

  stop(): void {
    this.stopped = true;
    this.redis.off('ready', this.onReady);
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Compares the generation with the one this process knows; runs the listeners after a loss. Resolves when done. */
  check(): Promise<void> {
    this.running ??= this.checkOnce().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async checkOnce(): Promise<void> {
    if (this.stopped || this.redis.status !== 'ready') return;
    let current: string | null;
    try {
      current = await this.redis.get(this.options.key);
      if (current === null) {
        const fresh = randomUUID();
        current = (await this.redis.set(this.options.key, fresh, 'NX')) === 'OK' ? fresh : await this.redis.get(this.options.key);
      }
    } catch {
      return; // Redis went away again: the next 'ready' checks
    }
    if (this.known !== null && current !== this.known) {
      this.losses++;
      this.owed = 'loss';
    }
    this.known = current;
    const reason = this.owed;
    if (reason === null) return;
    try {
      for (const listener of this.listeners) await listener(reason);
      if (this.owed === reason) this.owed = null;
    } catch (error) {
      this.options.warn?.(`recovery after Redis lost its data failed (run again at the next check): ${(error as Error).message}`);
    }
  }
}
