import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { ErrorCode } from '@commune/protocol';
import { BRIDGE_ACCOUNT } from '../src/ledger/ledger.service.js';
import { LedgerModel, Writer, type Op, type Step } from './ledger-model.js';
import { randomAddress, startTestBank, uniqueKey, type TestBank } from './ledger-support.js';

/**
 * Property tests of the ledger against an in-memory model (ledger-model.ts), on real Postgres.
 * Random operations come from fast-check; the seed is printed when a property fails and can be
 * replayed with LEDGER_PROPERTY_SEED=<seed>.
 */
const seed = Number(process.env.LEDGER_PROPERTY_SEED ?? (Date.now() ^ (Math.random() * 2 ** 31)) >>> 0);
const WRITERS = 32;
const ACCOUNTS = 6;
const DCC = 10n ** 18n;

/** Each run starts with every account funded by this much (a mint), so most operations can succeed. */
const FUNDING = 1000n * DCC;
// Mostly affordable amounts, some tiny, some beyond any balance (ENOFUNDS).
const amount = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: 1n, max: 300n * DCC }) },
  { weight: 2, arbitrary: fc.bigInt({ min: 1n, max: 1000n }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 1000n * DCC, max: 10n ** 30n }) },
);
const account = fc.nat({ max: ACCOUNTS - 1 });
const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ type: fc.constant('mint' as const), to: account, amount }) },
  { weight: 5, arbitrary: fc.record({ type: fc.constant('transfer' as const), from: account, to: account, amount, reverse: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ type: fc.constant('hold' as const), account, amount }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('increase' as const), hold: fc.nat(), amount }) },
  {
    weight: 5,
    arbitrary: fc.record({
      type: fc.constant('pay' as const),
      hold: fc.nat(),
      // Keys from a small range, so batches repeat keys of earlier batches and of themselves.
      payments: fc.array(fc.record({ key: fc.nat({ max: 7 }), to: account, amount: fc.oneof(fc.bigInt({ min: 0n, max: 40n * DCC }), fc.bigInt({ min: 0n, max: 100n })) }), {
        minLength: 1,
        maxLength: 6,
      }),
      fee: fc.oneof(fc.constant(0n), fc.bigInt({ min: 1n, max: DCC })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('release' as const), hold: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('withdraw' as const), account, amount }) },
  { weight: 2, arbitrary: fc.record({ type: fc.constant('retry' as const), of: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ type: fc.constant('reuse' as const), of: fc.nat() }) },
);
const stepArbitrary: fc.Arbitrary<Step> = fc.record({ op: opArbitrary, duplicate: fc.nat({ max: 4 }).map((n) => n === 0) });

describe('ledger properties (real Postgres)', () => {
  let bank: TestBank;

  beforeAll(async () => {
    bank = await startTestBank({ DATABASE_POOL_SIZE: String(WRITERS + 4), HOLD_SWEEP_INTERVAL_MS: '3600000' });
  });
  afterAll(async () => {
    await bank?.stop();
  });

  /** Runs writers against the ledger and the model, then compares everything the model knows. */
  async function check(writersSteps: Step[][], exact: boolean): Promise<void> {
    const run = `r${randomBytes(4).toString('hex')}`;
    const accounts = Array.from({ length: ACCOUNTS }, randomAddress);
    const feeAccount = bank.ledger.feeAccount;
    const watched = [...accounts, feeAccount, BRIDGE_ACCOUNT];
    const start = await bank.balances(watched);
    const model = new LedgerModel(exact);
    const violations: string[] = model.violations;
    const funder = new Writer(`${run}-funding`, bank.ledger, model, accounts);
    await funder.run(accounts.map((_, index) => ({ op: { type: 'mint', to: index, amount: FUNDING }, duplicate: false })));
    const snapshot = () => bank.balances([...accounts, feeAccount]);
    const hooks = exact
      ? {
          beforeRefusalCheck: snapshot,
          // A refused call changes nothing: no balance moved.
          afterRefusal: async (before: unknown, call: unknown) => {
            const after = await snapshot();
            for (const [address, balance] of before as Map<string, bigint>) {
              if (after.get(address) !== balance) violations.push(`refused ${JSON.stringify(call, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))} moved ${address}`);
            }
          },
          // A transfer followed by its reverse leaves every balance as it was.
          transferAndReverse: async (both: () => Promise<void>) => {
            const before = await snapshot();
            await both();
            const after = await snapshot();
            for (const [address, balance] of before) if (after.get(address) !== balance) violations.push(`a transfer and its reverse changed ${address}`);
          },
        }
      : {};
    await Promise.all(writersSteps.map((steps, index) => new Writer(`${run}-w${index}`, bank.ledger, model, accounts, hooks).run(steps)));

    if (process.env.LEDGER_PROPERTY_TALLY) console.log(JSON.stringify(Object.fromEntries([...model.tally].sort())));
    const end = await bank.balances(watched);
    for (const address of accounts) {
      if (end.get(address)! - start.get(address)! !== model.balance(address)) {
        violations.push(`balance of ${address} is ${end.get(address)}, model says ${model.balance(address)}`);
      }
      if (end.get(address)! < 0n) violations.push(`${address} is negative`);
    }
    if (end.get(feeAccount)! - start.get(feeAccount)! !== model.fees) violations.push(`fees ${end.get(feeAccount)! - start.get(feeAccount)!}, model ${model.fees}`);
    if (start.get(BRIDGE_ACCOUNT)! - end.get(BRIDGE_ACCOUNT)! !== model.minted - model.burned) violations.push('the bridge account does not mirror mints minus burns');
    // Conservation: what users, fees and open holds have together changes only by mints and burns.
    let held = 0n;
    for (const hold of model.holds.values()) {
      const stored = await bank.ledger.getHold(hold.id);
      if (stored.remaining !== hold.remaining.toString() || stored.posted !== hold.posted.toString() || stored.amount !== hold.amount.toString()) {
        violations.push(`hold ${hold.id} is ${JSON.stringify(stored)}, model ${hold.remaining}/${hold.posted}/${hold.amount}`);
      }
      if ((stored.status === 'held') !== (hold.status === 'held')) violations.push(`hold ${hold.id} is ${stored.status}, model ${hold.status}`);
      held += BigInt(stored.remaining);
    }
    const inAccounts = accounts.reduce((sum, address) => sum + end.get(address)! - start.get(address)!, 0n);
    if (inAccounts + held + (end.get(feeAccount)! - start.get(feeAccount)!) !== model.minted - model.burned) violations.push('money was created or destroyed');
    const audit = await bank.ledger.audit();
    if (audit.sumOfBalances !== '0') violations.push(`balances sum to ${audit.sumOfBalances}`);
    for (const [name, list] of Object.entries(audit)) if (Array.isArray(list) && list.length > 0) violations.push(`audit: ${name} ${list.join(', ')}`);
    if (violations.length > 0) throw new Error(`${violations.length} violations:\n${violations.slice(0, 20).join('\n')}`);
  }

  /** Runs a property; on failure reports the seed, the violations and (shortened) the counterexample. */
  async function assertProperty(property: fc.IAsyncProperty<[Step[][]]>, numRuns: number, endOnFailure: boolean): Promise<void> {
    const details = await fc.check(property, { seed, numRuns, endOnFailure });
    if (!details.failed) return;
    const error = details.errorInstance as Error | undefined;
    const counterexample = JSON.stringify(details.counterexample, (_key, value) => (typeof value === 'bigint' ? value.toString() : value));
    throw new Error(
      `property failed after ${details.numRuns} runs; replay with LEDGER_PROPERTY_SEED=${seed} (path ${details.counterexamplePath}):\n` +
        `${error?.stack ?? String(error)}\ncounterexample: ${counterexample.slice(0, 4000)}`,
    );
  }

  it(`matches the model with ${WRITERS} concurrent writers: conservation, no negative balance, idempotent retries, payments once (seed ${seed})`, async () => {
    const writers = fc.array(fc.array(stepArbitrary, { minLength: 4, maxLength: 10, size: 'max' }), { minLength: WRITERS, maxLength: WRITERS });
    await assertProperty(fc.asyncProperty(writers, (steps) => check(steps, false)), 5, true);
  }, 180_000);

  it(`matches the model exactly with one writer: every refusal predicted, refusals change nothing, transfer + reverse is a no-op (seed ${seed})`, async () => {
    const writers = fc.array(fc.array(stepArbitrary, { minLength: 20, maxLength: 60, size: 'max' }), { minLength: 1, maxLength: 1 });
    await assertProperty(fc.asyncProperty(writers, (steps) => check(steps, true)), 10, false);
  }, 180_000);

  it('pays each key once when 32 holds post the same payment keys at once', async () => {
    const payer = randomAddress();
    const worker = randomAddress();
    const keys = Array.from({ length: 50 }, (_, index) => `${uniqueKey('job')}:${index}`);
    await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: payer, amount: String(WRITERS * 100), memo: null });
    const holds = await Promise.all(
      Array.from({ length: WRITERS }, async () =>
        (await bank.ledger.createHold({ idempotencyKey: uniqueKey('hold'), account: payer, amount: '100', reference: 'j_0000000000', expiresAt: Date.now() + 60_000 })).value,
      ),
    );
    const replies = await Promise.all(
      holds.map((hold, index) =>
        bank.ledger.postPayments(hold.holdId, {
          idempotencyKey: uniqueKey('pay'),
          payments: [...keys.slice(index % keys.length), ...keys.slice(0, index % keys.length)].map((key) => ({ key, to: worker, amount: '1' })),
          feePerPayment: '0',
        }),
      ),
    );
    expect(replies.reduce((sum, reply) => sum + reply.paid, 0)).toBe(keys.length);
    expect(replies.every((reply) => reply.paid + reply.alreadyPaid === keys.length)).toBe(true);
    expect((await bank.balances([worker])).get(worker)).toBe(BigInt(keys.length));
    expect((await bank.ledger.audit()).driftedAccounts).toEqual([]);
  }, 60_000);

  it('resolves a hold once when 32 releases and burns race', async () => {
    const owner = randomAddress();
    await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: owner, amount: '1000', memo: null });
    const hold = await bank.ledger.reserve({ idempotencyKey: uniqueKey('reserve'), account: owner, amount: '400', reference: 'race' });
    const attempts = await Promise.allSettled(
      Array.from({ length: WRITERS }, (_, index) =>
        index % 2 === 0 ? bank.ledger.releaseHold({ idempotencyKey: uniqueKey('release'), holdId: hold.holdId }) : bank.ledger.burn({ idempotencyKey: uniqueKey('burn'), holdId: hold.holdId }),
      ),
    );
    const won = attempts.filter((attempt) => attempt.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const attempt of attempts) if (attempt.status === 'rejected') expect(attempt.reason).toMatchObject({ code: ErrorCode.EHOLDCLOSED });
    const balance = (await bank.balances([owner])).get(owner);
    const releasedWon = attempts.findIndex((attempt) => attempt.status === 'fulfilled') % 2 === 0;
    expect(balance).toBe(releasedWon ? 1000n : 600n);
    expect(await bank.ledger.getHold(hold.holdId)).toMatchObject({ status: 'released', remaining: '0' });
  }, 60_000);

  it('never deadlocks or loses an update when 32 writers move money around a ring of 3 accounts', async () => {
    const ring = [randomAddress(), randomAddress(), randomAddress()];
    for (const address of ring) await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: address, amount: '1000', memo: null });
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, writer) => {
        for (let i = 0; i < 20; i++) {
          const from = ring[(writer + i) % 3]!;
          const to = ring[(writer + i + 1 + (writer % 2)) % 3]!;
          await bank.ledger.transfer({ idempotencyKey: uniqueKey('ring'), from, to, amount: '1' }).catch((error: { code?: string }) => {
            if (error.code !== ErrorCode.ENOFUNDS) throw error;
          });
        }
      }),
    );
    const balances = await bank.balances(ring);
    expect([...balances.values()].reduce((sum, balance) => sum + balance, 0n)).toBe(3000n);
    const audit = await bank.ledger.audit();
    expect(audit).toMatchObject({ sumOfBalances: '0', unbalancedTransfers: [], driftedAccounts: [], negativeAccounts: [], inconsistentHolds: [] });
  }, 60_000);
});
