import { ErrorCode } from '@commune/protocol';
import { randomAddress, startTestBank, uniqueKey, type TestBank } from './ledger-support.js';

/**
 * Transfers committed in groups (LedgerService.moveBetweenAccounts): one ledger transaction at a
 * time here (TRANSFER_BATCHES_IN_FLIGHT=1), so what arrives together shares a batch, and a queue
 * of at most MAX_PENDING_TRANSFERS=4.
 */
describe('transfer batches (real Postgres)', () => {
  let bank: TestBank;

  beforeAll(async () => {
    bank = await startTestBank({ TRANSFER_BATCHES_IN_FLIGHT: '1', MAX_PENDING_TRANSFERS: '4', MAX_TRANSFERS_PER_BATCH: '100' });
  });
  afterAll(async () => {
    await bank?.stop();
  });

  const settle = <T>(promises: Array<Promise<T>>) => Promise.allSettled(promises);
  const codeOf = (result: PromiseSettledResult<unknown>) => (result.status === 'rejected' ? (result.reason as { code?: string }).code : 'ok');

  it('applies one batch in arrival order: what the balance covers commits, the rest is ENOFUNDS, a key used twice gets one outcome', async () => {
    const payer = randomAddress();
    const payees = [randomAddress(), randomAddress(), randomAddress()];
    await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: payer, amount: '10' });
    // Warm the account cache, so that the transfers below reach the queue in the same tick.
    await bank.ledger.transfer({ idempotencyKey: uniqueKey('warm'), from: payer, to: payees[0]!, amount: '1' });
    await bank.ledger.transfer({ idempotencyKey: uniqueKey('warm'), from: payees[0]!, to: payer, amount: '1' });
    for (const payee of payees.slice(1)) {
      await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: payee, amount: '1' });
      await bank.ledger.transfer({ idempotencyKey: uniqueKey('warm'), from: payee, to: payer, amount: '1' });
    }
    const start = (await bank.balances([payer])).get(payer)!;
    expect(start).toBe(12n);
    const shared = uniqueKey('shared');
    const first = bank.ledger.transfer({ idempotencyKey: uniqueKey('t'), from: payer, to: payees[0]!, amount: '1' }); // its own batch
    const batch = [
      bank.ledger.transfer({ idempotencyKey: uniqueKey('t'), from: payer, to: payees[1]!, amount: '8' }),
      bank.ledger.transfer({ idempotencyKey: shared, from: payer, to: payees[2]!, amount: '5' }), // 3 left: ENOFUNDS
      bank.ledger.transfer({ idempotencyKey: shared, from: payer, to: payees[2]!, amount: '5' }), // same key: waits for the next batch, refused again
    ];
    const results = await settle([first, ...batch]);
    expect(results.map(codeOf)).toEqual(['ok', 'ok', ErrorCode.ENOFUNDS, ErrorCode.ENOFUNDS]);
    expect(await bank.balances([payer, ...payees])).toEqual(new Map([[payer, 3n], [payees[0]!, 1n], [payees[1]!, 8n], [payees[2]!, 0n]]));
    // A refusal left no key: the same key goes through once it fits.
    await expect(bank.ledger.transfer({ idempotencyKey: shared, from: payer, to: payees[2]!, amount: '3' })).resolves.toMatchObject({ created: true });
    expect(await bank.ledger.audit()).toMatchObject({ sumOfBalances: '0', unbalancedTransfers: [], driftedAccounts: [], negativeAccounts: [] });
  });

  it('refuses transfers beyond MAX_PENDING_TRANSFERS with EUNAVAILABLE, changing nothing for them', async () => {
    const payer = randomAddress();
    const payee = randomAddress();
    await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: payer, amount: '100' });
    await bank.ledger.transfer({ idempotencyKey: uniqueKey('warm'), from: payer, to: payee, amount: '1' });
    // 1 goes straight into the one batch in flight, 4 wait, the other 15 are refused.
    const results = await settle(Array.from({ length: 20 }, () => bank.ledger.transfer({ idempotencyKey: uniqueKey('t'), from: payer, to: payee, amount: '1' })));
    const codes = results.map(codeOf);
    expect(codes.filter((code) => code === 'ok')).toHaveLength(5);
    expect(codes.filter((code) => code === ErrorCode.EUNAVAILABLE)).toHaveLength(15);
    expect(await bank.balances([payer, payee])).toEqual(new Map([[payer, 94n], [payee, 6n]]));
  });
});
