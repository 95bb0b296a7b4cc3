import { canonicalJson, ErrorCode, isCommuneError } from '@commune/protocol';
import type { LedgerService } from '../src/ledger/ledger.service.js';

/**
 * An in-memory model of the ledger (plain bigints, no Postgres) that the property tests run
 * side by side with the real LedgerService. Each writer owns its idempotency keys, holds and
 * payment keys, so everything about them is predictable even when 32 writers run at once; what
 * depends on balances other writers also move (ENOFUNDS of a transfer or a hold) is predicted
 * exactly only when a single writer runs, and otherwise taken from the ledger's answer. Balance
 * changes commute, so at the end the model's balances must equal the ledger's exactly.
 */

export type Op =
  | { type: 'mint'; to: number; amount: bigint }
  | { type: 'transfer'; from: number; to: number; amount: bigint; reverse: boolean }
  | { type: 'hold'; account: number; amount: bigint }
  | { type: 'increase'; hold: number; amount: bigint }
  | { type: 'pay'; hold: number; payments: Array<{ key: number; to: number; amount: bigint }>; fee: bigint }
  | { type: 'release'; hold: number }
  | { type: 'withdraw'; account: number; amount: bigint }
  /** The same call again (same key, same body): the first outcome, no second effect. */
  | { type: 'retry'; of: number }
  /** The key of an earlier call with another body: EKEYREUSED once that key has an outcome. */
  | { type: 'reuse'; of: number };

/** A step of a writer: an operation, possibly sent twice at once (a client retrying before the answer). */
export interface Step {
  op: Op;
  duplicate: boolean;
}

/** One keyed call of LedgerService. */
export type Call =
  | { kind: 'mint'; key: string; to: string; amount: bigint }
  | { kind: 'transfer'; key: string; from: string; to: string; amount: bigint }
  | { kind: 'hold'; key: string; account: string; amount: bigint; reference: string; expiresAt: number }
  | { kind: 'increase'; key: string; holdId: string; amount: bigint }
  | { kind: 'pay'; key: string; holdId: string; payments: Array<{ key: string; to: string; amount: bigint }>; fee: bigint }
  | { kind: 'release'; key: string; holdId: string }
  | { kind: 'reserve'; key: string; account: string; amount: bigint; reference: string }
  | { kind: 'burn'; key: string; holdId: string };

export type CallResult = { ok: true; value: Record<string, unknown> } | { ok: false; code: string; message: string };

interface ModelHold {
  id: string;
  owner: string;
  amount: bigint;
  posted: bigint;
  remaining: bigint;
  status: 'held' | 'released';
}

/** What the model expects of a call before it runs. */
interface Expectation {
  /** 'ok' or an error code. */
  outcome: string;
  /** True when the outcome depends on balances other writers move too. */
  shared: boolean;
  /** A replay: the recorded first outcome. */
  replay?: Record<string, unknown>;
}

/** Order-insensitive text of a value (bigints as decimal strings), for comparisons. */
const text = (value: unknown): string => canonicalJson(JSON.parse(JSON.stringify(value, (_key, item) => (typeof item === 'bigint' ? item.toString() : item))));

/** Where the bank keeps the call's idempotency key (the ledger scopes keys by operation). */
function scopeOf(call: Call): string {
  switch (call.kind) {
    case 'transfer':
      return `transfer:${call.from}|${call.key}`;
    case 'hold':
      return `create-hold|${call.key}`;
    case 'increase':
      return `increase-hold|${call.key}`;
    case 'pay':
      return `post-payments|${call.key}`;
    case 'release':
      return `release-hold|${call.key}`;
    default:
      return `${call.kind}|${call.key}`;
  }
}

export async function execute(ledger: LedgerService, call: Call): Promise<CallResult> {
  try {
    switch (call.kind) {
      case 'mint':
        return { ok: true, value: { ...(await ledger.mint({ idempotencyKey: call.key, to: call.to, amount: call.amount.toString(), memo: 'property test' })) } };
      case 'transfer': {
        const outcome = await ledger.transfer({ idempotencyKey: call.key, from: call.from, to: call.to, amount: call.amount.toString() });
        return { ok: true, value: { ...outcome.value, created: outcome.created } };
      }
      case 'hold': {
        const outcome = await ledger.createHold({ idempotencyKey: call.key, account: call.account, amount: call.amount.toString(), reference: call.reference, expiresAt: call.expiresAt });
        return { ok: true, value: { ...outcome.value, created: outcome.created } };
      }
      case 'increase':
        return { ok: true, value: { ...(await ledger.increaseHold(call.holdId, { idempotencyKey: call.key, amount: call.amount.toString() })) } };
      case 'pay':
        return {
          ok: true,
          value: {
            ...(await ledger.postPayments(call.holdId, {
              idempotencyKey: call.key,
              payments: call.payments.map((payment) => ({ key: payment.key, to: payment.to, amount: payment.amount.toString() })),
              feePerPayment: call.fee.toString(),
            })),
          },
        };
      case 'release':
        return { ok: true, value: { ...(await ledger.releaseHold({ idempotencyKey: call.key, holdId: call.holdId })) } };
      case 'reserve':
        return { ok: true, value: { ...(await ledger.reserve({ idempotencyKey: call.key, account: call.account, amount: call.amount.toString(), reference: call.reference })) } };
      case 'burn':
        return { ok: true, value: { ...(await ledger.burn({ idempotencyKey: call.key, holdId: call.holdId })) } };
    }
  } catch (error) {
    if (isCommuneError(error)) return { ok: false, code: error.code, message: error.message };
    throw error;
  }
}

/** The outcome of a call with the `created` flag left out (a replay answers the same, created false). */
function withoutCreated(value: Record<string, unknown>): Record<string, unknown> {
  const { created: _created, ...rest } = value;
  return rest;
}

export class LedgerModel {
  readonly balances = new Map<string, bigint>();
  readonly holds = new Map<string, ModelHold>();
  readonly paidKeys = new Set<string>();
  /** scope|key -> body and first outcome. */
  readonly recorded = new Map<string, { body: string; value: Record<string, unknown> }>();
  minted = 0n;
  burned = 0n;
  fees = 0n;
  /** Outcomes by call kind (`pay:ok`, `transfer:ENOFUNDS`, `pay:alreadyPaid`...), to see what a run exercised. */
  readonly tally = new Map<string, number>();
  /** Assertion failures, with the call that caused them. */
  readonly violations: string[] = [];

  constructor(readonly exact: boolean) {}

  balance(address: string): bigint {
    return this.balances.get(address) ?? 0n;
  }

  private add(address: string, amount: bigint): void {
    this.balances.set(address, this.balance(address) + amount);
  }

  expect(call: Call): Expectation {
    const recorded = this.recorded.get(scopeOf(call));
    if (recorded) {
      return recorded.body === text(call) ? { outcome: 'ok', shared: false, replay: recorded.value } : { outcome: ErrorCode.EKEYREUSED, shared: false };
    }
    const covered = (address: string, amount: bigint): Expectation => ({ outcome: this.balance(address) >= amount ? 'ok' : ErrorCode.ENOFUNDS, shared: true });
    switch (call.kind) {
      case 'mint':
        return { outcome: 'ok', shared: false };
      case 'transfer':
        return covered(call.from, call.amount);
      case 'hold':
        return covered(call.account, call.amount);
      case 'reserve':
        return covered(call.account, call.amount);
      case 'increase': {
        const hold = this.holds.get(call.holdId)!;
        return hold.status !== 'held' ? { outcome: ErrorCode.EHOLDCLOSED, shared: false } : covered(hold.owner, call.amount);
      }
      case 'pay': {
        const hold = this.holds.get(call.holdId)!;
        if (hold.status !== 'held') return { outcome: ErrorCode.EHOLDCLOSED, shared: false };
        const { total } = this.freshPayments(call);
        return { outcome: total > hold.remaining ? ErrorCode.ENOFUNDS : 'ok', shared: false };
      }
      case 'release':
      case 'burn':
        return { outcome: this.holds.get(call.holdId)!.status !== 'held' ? ErrorCode.EHOLDCLOSED : 'ok', shared: false };
    }
  }

  private freshPayments(call: Extract<Call, { kind: 'pay' }>): { fresh: Array<{ key: string; to: string; amount: bigint }>; total: bigint } {
    const seen = new Set<string>();
    const fresh = call.payments.filter((payment) => {
      if (seen.has(payment.key) || this.paidKeys.has(payment.key)) return false;
      seen.add(payment.key);
      return true;
    });
    return { fresh, total: fresh.reduce((sum, payment) => sum + payment.amount, 0n) + call.fee * BigInt(fresh.length) };
  }

  /**
   * Checks the answers of one call sent `results.length` times at once and applies its effect
   * (once). Returns the outcome the writer goes on with.
   */
  observe(call: Call, results: CallResult[]): CallResult {
    const expected = this.expect(call);
    for (const result of results) this.count(`${call.kind}:${expected.replay ? 'replay' : result.ok ? 'ok' : result.code}`);
    const label = `${call.kind} ${text(call)}`;
    const fail = (message: string) => this.violations.push(`${label}: ${message}; answers ${text(results)}`);
    const successes = results.filter((result): result is Extract<CallResult, { ok: true }> => result.ok);
    const failures = results.filter((result): result is Extract<CallResult, { ok: false }> => !result.ok);
    // Every success of one key carries the same outcome.
    for (const success of successes.slice(1)) {
      if (text(withoutCreated(success.value)) !== text(withoutCreated(successes[0]!.value))) fail('two answers to the same key differ');
    }
    if (call.kind === 'mint' || call.kind === 'transfer' || call.kind === 'hold') {
      const created = successes.filter((success) => success.value.created === true).length;
      if (created > (expected.replay ? 0 : 1)) fail(`${created} answers say created`);
    }
    if (expected.replay) {
      if (failures.length > 0) fail('a retry of a recorded key failed');
      for (const success of successes) if (text(withoutCreated(success.value)) !== text(withoutCreated(expected.replay))) fail('a retry did not get the first outcome');
      return successes[0] ?? failures[0]!;
    }
    const exact = this.exact || !expected.shared;
    for (const failure of failures) {
      const allowed = exact ? [expected.outcome] : [ErrorCode.ENOFUNDS];
      if (!allowed.includes(failure.code)) fail(`refused with ${failure.code}, expected ${expected.outcome}`);
    }
    if (successes.length > 0 && exact && expected.outcome !== 'ok') fail(`succeeded, expected ${expected.outcome}`);
    if (this.exact && failures.length > 0 && successes.length > 0) fail('the same call both succeeded and failed');
    const success = successes[0];
    if (!success) return failures[0]!;
    this.apply(call, success.value, fail);
    this.recorded.set(scopeOf(call), { body: text(call), value: success.value });
    return success;
  }

  private count(name: string, by = 1): void {
    this.tally.set(name, (this.tally.get(name) ?? 0) + by);
  }

  private apply(call: Call, value: Record<string, unknown>, fail: (message: string) => void): void {
    const check = (field: string, actual: unknown, wanted: unknown) => {
      if (String(actual) !== String(wanted)) fail(`${field} is ${String(actual)}, model says ${String(wanted)}`);
    };
    switch (call.kind) {
      case 'mint':
        this.add(call.to, call.amount);
        this.minted += call.amount;
        return;
      case 'transfer':
        this.add(call.from, -call.amount);
        this.add(call.to, call.amount);
        check('amount', value.amount, call.amount);
        return;
      case 'hold':
      case 'reserve': {
        this.add(call.account, -call.amount);
        const id = String(value.holdId);
        this.holds.set(id, { id, owner: call.account, amount: call.amount, posted: 0n, remaining: call.amount, status: 'held' });
        check('remaining', value.remaining, call.amount);
        check('status', value.status, 'held');
        return;
      }
      case 'increase': {
        const hold = this.holds.get(call.holdId)!;
        this.add(hold.owner, -call.amount);
        hold.amount += call.amount;
        hold.remaining += call.amount;
        check('amount', value.amount, hold.amount);
        check('remaining', value.remaining, hold.remaining);
        return;
      }
      case 'pay': {
        const hold = this.holds.get(call.holdId)!;
        const { fresh, total } = this.freshPayments(call);
        for (const payment of fresh) {
          this.add(payment.to, payment.amount);
          this.paidKeys.add(payment.key);
        }
        this.fees += call.fee * BigInt(fresh.length);
        hold.remaining -= total;
        hold.posted += total;
        this.count('pay:alreadyPaid', call.payments.length - fresh.length);
        check('paid', value.paid, fresh.length);
        check('alreadyPaid', value.alreadyPaid, call.payments.length - fresh.length);
        const reply = value.hold as Record<string, unknown>;
        check('hold.remaining', reply.remaining, hold.remaining);
        check('hold.posted', reply.posted, hold.posted);
        return;
      }
      case 'release': {
        const hold = this.holds.get(call.holdId)!;
        this.add(hold.owner, hold.remaining);
        hold.remaining = 0n;
        hold.status = 'released';
        check('status', value.status, 'released');
        check('remaining', value.remaining, 0);
        return;
      }
      case 'burn': {
        const hold = this.holds.get(call.holdId)!;
        this.burned += hold.remaining;
        hold.posted += hold.remaining;
        hold.remaining = 0n;
        hold.status = 'released';
        return;
      }
    }
  }
}

/** Runs one writer's steps against the ledger and the model. */
export class Writer {
  private readonly calls: Call[] = [];
  private readonly heldIds: string[] = [];
  private counter = 0;

  constructor(
    private readonly name: string,
    private readonly ledger: LedgerService,
    private readonly model: LedgerModel,
    private readonly accounts: readonly string[],
    private readonly hooks: { beforeRefusalCheck?: () => Promise<unknown>; afterRefusal?: (before: unknown, call: Call) => Promise<void>; transferAndReverse?: (run: () => Promise<void>) => Promise<void> } = {},
  ) {}

  private key(): string {
    return `${this.name}-c${this.counter++}`;
  }

  private hold(index: number): string | null {
    return this.heldIds.length === 0 ? null : this.heldIds[index % this.heldIds.length]!;
  }

  async run(steps: readonly Step[]): Promise<void> {
    for (const step of steps) {
      const call = this.callOf(step.op);
      if (!call) continue;
      if (step.op.type === 'transfer' && step.op.reverse && call.kind === 'transfer') {
        const both = async () => {
          const forward = await this.send(call, step.duplicate);
          if (forward.ok) await this.send({ kind: 'transfer', key: this.key(), from: call.to, to: call.from, amount: call.amount }, false);
        };
        await (this.hooks.transferAndReverse ? this.hooks.transferAndReverse(both) : both());
        continue;
      }
      const result = await this.send(call, step.duplicate);
      if (step.op.type === 'withdraw' && result.ok && call.kind === 'reserve') {
        await this.send({ kind: 'burn', key: this.key(), holdId: String(result.value.holdId) }, step.duplicate);
      }
    }
  }

  private async send(call: Call, duplicate: boolean): Promise<CallResult> {
    const before = this.hooks.beforeRefusalCheck ? await this.hooks.beforeRefusalCheck() : undefined;
    const results = await Promise.all(Array.from({ length: duplicate ? 2 : 1 }, () => execute(this.ledger, call)));
    const result = this.model.observe(call, results);
    this.calls.push(call);
    if (result.ok && (call.kind === 'hold' || call.kind === 'reserve') && !this.heldIds.includes(String(result.value.holdId))) this.heldIds.push(String(result.value.holdId));
    if (!result.ok && this.hooks.afterRefusal) await this.hooks.afterRefusal(before, call);
    return result;
  }

  private callOf(op: Op): Call | null {
    const account = (index: number) => this.accounts[index % this.accounts.length]!;
    switch (op.type) {
      case 'mint':
        return { kind: 'mint', key: this.key(), to: account(op.to), amount: op.amount };
      case 'transfer': {
        const from = account(op.from);
        const to = op.from % this.accounts.length === op.to % this.accounts.length ? account(op.to + 1) : account(op.to);
        return { kind: 'transfer', key: this.key(), from, to, amount: op.amount };
      }
      case 'hold':
        return { kind: 'hold', key: this.key(), account: account(op.account), amount: op.amount, reference: `j_${this.name.replace(/[^0-9a-z]/g, '').slice(-20).padStart(10, '0')}`, expiresAt: Date.now() + 3600_000 };
      case 'increase': {
        const holdId = this.hold(op.hold);
        return holdId ? { kind: 'increase', key: this.key(), holdId, amount: op.amount } : null;
      }
      case 'pay': {
        const holdId = this.hold(op.hold);
        if (!holdId) return null;
        const payments = op.payments.map((payment) => ({ key: `${this.name}-p${payment.key}`, to: account(payment.to), amount: payment.amount }));
        return { kind: 'pay', key: this.key(), holdId, payments, fee: op.fee };
      }
      case 'release': {
        const holdId = this.hold(op.hold);
        return holdId ? { kind: 'release', key: this.key(), holdId } : null;
      }
      case 'withdraw':
        return { kind: 'reserve', key: this.key(), account: account(op.account), amount: op.amount, reference: `withdrawal ${this.name}` };
      case 'retry':
        return this.calls.length === 0 ? null : this.calls[op.of % this.calls.length]!;
      case 'reuse': {
        if (this.calls.length === 0) return null;
        const earlier = this.calls[op.of % this.calls.length]!;
        switch (earlier.kind) {
          case 'mint':
          case 'transfer':
          case 'hold':
          case 'increase':
          case 'reserve':
            return { ...earlier, amount: earlier.amount + 1n };
          case 'pay':
            return { ...earlier, fee: earlier.fee + 1n };
          case 'release':
          case 'burn': {
            const other = this.heldIds.find((id) => id !== earlier.holdId);
            return other ? { ...earlier, holdId: other } : null;
          }
        }
      }
    }
  }
}
