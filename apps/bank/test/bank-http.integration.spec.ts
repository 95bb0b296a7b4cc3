import { Wallet } from 'ethers';
import { ErrorCode, SignedKind, signRequest, type Account, type HistoryPage, type Hold, type PostPaymentsReply, type TransferReceipt } from '@commune/protocol';
import { waitFor } from '../../../test/support/services.js';
import { bankClient, randomAddress, SERVICE_TOKEN, signedTransfer, startTestBank, uniqueKey, type TestBank } from './ledger-support.js';

type ErrorBody = { ok: false; code: string; message: string };
const DCC = 10n ** 18n;

describe('bank HTTP API (real Postgres and Redis)', () => {
  let bank: TestBank;
  let api: ReturnType<typeof bankClient>;
  let anonymous: ReturnType<typeof bankClient>;

  beforeAll(async () => {
    bank = await startTestBank({ HOLD_SWEEP_INTERVAL_MS: '100', MAX_TRANSFER_LIFETIME_MS: '600000' });
    api = bankClient(bank.bank.url);
    anonymous = bankClient(bank.bank.url, null);
  });
  afterAll(async () => {
    await bank?.stop();
  });

  async function funded(amount: bigint): Promise<Wallet> {
    const wallet = Wallet.createRandom() as unknown as Wallet;
    await bank.ledger.mint({ idempotencyKey: uniqueKey('mint'), to: wallet.address, amount: amount.toString(), memo: 'test funds' });
    return wallet;
  }
  const balanceOf = async (address: string) => (await anonymous.get<Account>(`/accounts/${address}`)).body.balance;
  const newHold = (account: string, amount: string, extra: Record<string, unknown> = {}) =>
    api.post<Hold>('/holds', { idempotencyKey: uniqueKey('hold'), account, amount, reference: 'j_0123456789abcdef', expiresAt: Date.now() + 60_000, ...extra });

  describe('accounts', () => {
    it('answers 0 for an address never used, checksummed whatever the case asked', async () => {
      const address = randomAddress();
      const reply = await anonymous.get<Account>(`/accounts/${address.toLowerCase()}`);
      expect(reply).toEqual({ status: 200, body: { address, balance: '0' } });
    });

    it('refuses what is not an address with EINVAL (400)', async () => {
      const reply = await anonymous.get<ErrorBody>('/accounts/not-an-address');
      expect(reply.status).toBe(400);
      expect(reply.body).toMatchObject({ ok: false, code: ErrorCode.EINVAL });
    });

    it('pages the history newest first with before/limit', async () => {
      const wallet = await funded(100n);
      for (let i = 1; i <= 3; i++) await anonymous.post('/transfers', await signedTransfer(wallet, { to: randomAddress(), amount: String(i), memo: `n${i}` }));
      const first = await anonymous.get<HistoryPage>(`/accounts/${wallet.address}/history?limit=2`);
      expect(first.status).toBe(200);
      expect(first.body.entries.map((entry) => [entry.kind, entry.amount, entry.balanceAfter, entry.memo])).toEqual([
        ['transfer', '-3', '94', 'n3'],
        ['transfer', '-2', '97', 'n2'],
      ]);
      const second = await anonymous.get<HistoryPage>(`/accounts/${wallet.address}/history?limit=2&before=${first.body.nextBefore}`);
      expect(second.body.entries.map((entry) => [entry.kind, entry.amount, entry.balanceAfter])).toEqual([
        ['transfer', '-1', '99'],
        ['deposit', '100', '100'],
      ]);
      expect(second.body.nextBefore).toBeNull();
      const older = await anonymous.get<HistoryPage>(`/accounts/${wallet.address}/history?before=${second.body.entries[1]!.id}`);
      expect(older.body).toEqual({ address: wallet.address, entries: [], nextBefore: null });
      expect((await anonymous.get<ErrorBody>(`/accounts/${wallet.address}/history?limit=0`)).status).toBe(400);
    });
  });

  describe('POST /transfers', () => {
    it('moves money signed by the payer (201) and answers a replay with the first receipt (200)', async () => {
      const payer = await funded(1000n);
      const payee = randomAddress();
      const signed = await signedTransfer(payer, { to: payee, amount: '250', memo: 'rent' });
      const first = await anonymous.post<TransferReceipt>('/transfers', signed);
      expect(first.status).toBe(201);
      expect(first.body).toMatchObject({ from: payer.address, to: payee, amount: '250' });
      const replay = await anonymous.post<TransferReceipt>('/transfers', signed);
      expect(replay).toEqual({ status: 200, body: first.body });
      expect(await balanceOf(payer.address)).toBe('750');
      expect(await balanceOf(payee)).toBe('250');
    });

    it('refuses another transfer under a used key with EREPLAY (409)', async () => {
      const payer = await funded(1000n);
      const first = await signedTransfer(payer, { to: randomAddress(), amount: '1' });
      expect((await anonymous.post('/transfers', first)).status).toBe(201);
      const other = await signedTransfer(payer, { to: randomAddress(), amount: '2', idempotencyKey: first.transfer.idempotencyKey });
      const reply = await anonymous.post<ErrorBody>('/transfers', other);
      expect(reply.status).toBe(409);
      expect(reply.body.code).toBe(ErrorCode.EREPLAY);
      expect(await balanceOf(payer.address)).toBe('999');
    });

    it('refuses a transfer not signed by `from` with EBADSIGNATURE (401)', async () => {
      const payer = await funded(1000n);
      const thief = Wallet.createRandom() as unknown as Wallet;
      const forged = await signedTransfer(payer, { to: thief.address, amount: '1000' }, thief);
      const reply = await anonymous.post<ErrorBody>('/transfers', forged);
      expect(reply.status).toBe(401);
      expect(reply.body.code).toBe(ErrorCode.EBADSIGNATURE);
      const tampered = await signedTransfer(payer, { to: thief.address, amount: '1' });
      tampered.transfer.amount = '1000';
      expect((await anonymous.post<ErrorBody>('/transfers', tampered)).body.code).toBe(ErrorCode.EBADSIGNATURE);
      // Signed by the payer, but as another kind of request (a withdrawal): not a transfer.
      const otherKind = await signedTransfer(payer, { to: thief.address, amount: '1' });
      otherKind.signature = await signRequest(payer, SignedKind.withdrawal, otherKind.transfer);
      expect((await anonymous.post<ErrorBody>('/transfers', otherKind)).body.code).toBe(ErrorCode.EBADSIGNATURE);
      expect(await balanceOf(payer.address)).toBe('1000');
    });

    it('verifies the transfer exactly as sent: a field the signature does not cover is refused, whatever it is', async () => {
      const payer = await funded(10n);
      const signed = await signedTransfer(payer, { to: randomAddress(), amount: '1' });
      const extra = await anonymous.post<ErrorBody>('/transfers', { ...signed, transfer: { ...signed.transfer, note: 'unsigned' } });
      expect(extra).toMatchObject({ status: 400, body: { code: ErrorCode.EINVAL } });
      const outside = await anonymous.post<ErrorBody>('/transfers', { ...signed, raw: signed.transfer });
      expect(outside).toMatchObject({ status: 400, body: { code: ErrorCode.EINVAL } });
      expect(await balanceOf(payer.address)).toBe('10');
    });

    it('accepts a signature over the body as sent (lowercase addresses)', async () => {
      const payer = await funded(10n);
      const transfer = { from: payer.address.toLowerCase(), to: randomAddress().toLowerCase(), amount: '3', idempotencyKey: uniqueKey('t'), expiresAt: Date.now() + 60_000 };
      const reply = await anonymous.post<TransferReceipt>('/transfers', { transfer, signature: await signRequest(payer, SignedKind.transfer, transfer) });
      expect(reply.status).toBe(201);
    });

    it('refuses expired transfers and expiries too far ahead with EEXPIRED (401)', async () => {
      const payer = await funded(10n);
      const expired = await anonymous.post<ErrorBody>('/transfers', await signedTransfer(payer, { to: randomAddress(), amount: '1', expiresAt: Date.now() - 1 }));
      expect(expired.status).toBe(401);
      expect(expired.body.code).toBe(ErrorCode.EEXPIRED);
      const tooFar = await anonymous.post<ErrorBody>('/transfers', await signedTransfer(payer, { to: randomAddress(), amount: '1', expiresAt: Date.now() + 3600_000 }));
      expect(tooFar.body.code).toBe(ErrorCode.EEXPIRED);
      expect(await balanceOf(payer.address)).toBe('10');
    });

    it('refuses more than the available balance with ENOFUNDS (402), leaving balances alone', async () => {
      const payer = await funded(5n);
      const payee = randomAddress();
      const reply = await anonymous.post<ErrorBody>('/transfers', await signedTransfer(payer, { to: payee, amount: '6' }));
      expect(reply.status).toBe(402);
      expect(reply.body.code).toBe(ErrorCode.ENOFUNDS);
      expect(await balanceOf(payer.address)).toBe('5');
      expect(await balanceOf(payee)).toBe('0');
    });

    it('commits concurrent transfers together, refusing only what the balance cannot cover; a resend gets its first outcome', async () => {
      const payer = await funded(25n);
      const payees = Array.from({ length: 40 }, randomAddress);
      const signed = await Promise.all(payees.map((to) => signedTransfer(payer, { to, amount: '1' })));
      // Every transfer once, and the first ten twice, all at once.
      const replies = await Promise.all([...signed, ...signed.slice(0, 10)].map((body) => anonymous.post<TransferReceipt | ErrorBody>('/transfers', body)));
      const created = replies.filter((reply) => reply.status === 201);
      expect(created).toHaveLength(25);
      expect(replies.filter((reply) => reply.status !== 201 && reply.status !== 200).every((reply) => (reply.body as ErrorBody).code === ErrorCode.ENOFUNDS)).toBe(true);
      for (let i = 0; i < 10; i++) {
        const [first, again] = [replies[i]!, replies[40 + i]!];
        // Whichever of the two came first made the outcome; the other got the same receipt (or the same refusal).
        if ([first.status, again.status].includes(201)) expect([first.status, again.status].sort()).toEqual([200, 201]);
        if (first.status < 300 && again.status < 300) expect(again.body).toEqual(first.body);
      }
      expect(await balanceOf(payer.address)).toBe('0');
      const received = await Promise.all(payees.map(balanceOf));
      expect(received.filter((balance) => balance === '1')).toHaveLength(25);
      const audit = await bank.ledger.audit();
      expect(audit).toMatchObject({ unbalancedTransfers: [], driftedAccounts: [], negativeAccounts: [] });
    });

    it('carries 78-digit amounts exactly', async () => {
      const big = 10n ** 70n + 12345n;
      const payer = await funded(big);
      const payee = randomAddress();
      expect((await anonymous.post('/transfers', await signedTransfer(payer, { to: payee, amount: (big - 1n).toString() }))).status).toBe(201);
      expect(await balanceOf(payee)).toBe((big - 1n).toString());
      expect(await balanceOf(payer.address)).toBe('1');
    });

    it('refuses malformed bodies with EINVAL (400)', async () => {
      const payer = await funded(5n);
      for (const body of [{}, { transfer: { from: payer.address }, signature: '0x00' }]) {
        const reply = await anonymous.post<ErrorBody>('/transfers', body);
        expect(reply.status).toBe(400);
        expect(reply.body).toMatchObject({ ok: false, code: ErrorCode.EINVAL });
      }
      const response = await fetch(`${bank.bank.url}/transfers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"transfer":' });
      expect(response.status).toBe(400);
      expect(await response.json()).toMatchObject({ ok: false, code: ErrorCode.EINVAL });
      const toSelf = await anonymous.post<ErrorBody>('/transfers', await signedTransfer(payer, { to: payer.address, amount: '1' }));
      expect(toSelf.body.code).toBe(ErrorCode.EINVAL);
      // Past MAX_BODY_BYTES: ETOOBIG (413), before anything is parsed; a body that is not JSON: EINVAL.
      const huge = await fetch(`${bank.bank.url}/transfers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: `{"transfer":"${'x'.repeat(bank.bank.env.MAX_BODY_BYTES)}"}` });
      expect(huge.status).toBe(413);
      expect(await huge.json()).toMatchObject({ ok: false, code: ErrorCode.ETOOBIG });
      const text = await fetch(`${bank.bank.url}/transfers`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(await signedTransfer(payer, { to: randomAddress(), amount: '1' })) });
      expect(text.status).toBe(400);
      expect(await text.json()).toMatchObject({ ok: false, code: ErrorCode.EINVAL });
      expect(await balanceOf(payer.address)).toBe('5');
    });
  });

  describe('service endpoints', () => {
    it('refuses requests without the service token, or with another, with EUNAUTHORIZED (401)', async () => {
      const owner = await funded(100n);
      const body = { idempotencyKey: uniqueKey('hold'), account: owner.address, amount: '1', reference: 'j_0123456789abcdef', expiresAt: Date.now() + 60_000 };
      for (const client of [anonymous, bankClient(bank.bank.url, 'wrong-token-123456')]) {
        const reply = await client.post<ErrorBody>('/holds', body);
        expect(reply.status).toBe(401);
        expect(reply.body.code).toBe(ErrorCode.EUNAUTHORIZED);
        expect((await client.get<ErrorBody>('/holds/h_0000000000000000000000')).status).toBe(401);
      }
      expect(await balanceOf(owner.address)).toBe('100');
      expect(SERVICE_TOKEN).toBe(bank.env.BANK_SERVICE_TOKEN);
    });

    it('holds money out of the available balance (201), replays the first outcome (200), refuses a reused key (409)', async () => {
      const owner = await funded(1000n);
      const body = { idempotencyKey: uniqueKey('hold'), account: owner.address, amount: '600', reference: 'j_0123456789abcdef', expiresAt: Date.now() + 60_000 };
      const created = await api.post<Hold>('/holds', body);
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ account: owner.address, amount: '600', remaining: '600', posted: '0', status: 'held', reference: 'j_0123456789abcdef' });
      expect(await balanceOf(owner.address)).toBe('400');
      expect(await api.post<Hold>('/holds', body)).toEqual({ status: 200, body: created.body });
      const reused = await api.post<ErrorBody>('/holds', { ...body, amount: '1' });
      expect(reused.status).toBe(409);
      expect(reused.body.code).toBe(ErrorCode.EKEYREUSED);
      expect((await api.get<Hold>(`/holds/${created.body.holdId}`)).body).toEqual(created.body);
      const history = await anonymous.get<HistoryPage>(`/accounts/${owner.address}/history?limit=1`);
      expect(history.body.entries[0]).toMatchObject({ kind: 'hold', amount: '-600', balanceAfter: '400', counterparty: `hold:${created.body.holdId}` });
    });

    it('refuses a hold the balance does not cover with ENOFUNDS (402), and a past expiry with EINVAL (400)', async () => {
      const owner = await funded(10n);
      const reply = await newHold(owner.address, '11');
      expect(reply.status).toBe(402);
      expect((reply.body as unknown as ErrorBody).code).toBe(ErrorCode.ENOFUNDS);
      const past = await newHold(owner.address, '1', { expiresAt: Date.now() - 1000 });
      expect(past.status).toBe(400);
      expect(await balanceOf(owner.address)).toBe('10');
    });

    it('answers ENOTFOUND (404) for an unknown hold', async () => {
      const reply = await api.get<ErrorBody>('/holds/h_doesnotexist000000000000');
      expect(reply.status).toBe(404);
      expect(reply.body.code).toBe(ErrorCode.ENOTFOUND);
      expect((await api.post<ErrorBody>('/holds/nope/release', { idempotencyKey: uniqueKey('r') })).status).toBe(404);
    });

    it('increases a hold (re-escrow) and refuses what the balance does not cover', async () => {
      const owner = await funded(100n);
      const hold = (await newHold(owner.address, '50')).body;
      const increased = await api.post<Hold>(`/holds/${hold.holdId}/increase`, { idempotencyKey: uniqueKey('inc'), amount: '30', expiresAt: Date.now() + 120_000 });
      expect(increased.status).toBe(200);
      expect(increased.body).toMatchObject({ amount: '80', remaining: '80' });
      expect(Date.parse(increased.body.expiresAt)).toBeGreaterThan(Date.parse(hold.expiresAt));
      const refused = await api.post<ErrorBody>(`/holds/${hold.holdId}/increase`, { idempotencyKey: uniqueKey('inc'), amount: '21' });
      expect(refused.status).toBe(402);
      expect(refused.body.code).toBe(ErrorCode.ENOFUNDS);
      expect(await balanceOf(owner.address)).toBe('20');
    });

    it('pays each key once out of a hold, with the fee to the fee account', async () => {
      const owner = await funded(10n * DCC);
      const [alice, bob] = [randomAddress(), randomAddress()];
      const feeBefore = BigInt(await balanceOf(bank.ledger.feeAccount));
      const hold = (await newHold(owner.address, (5n * DCC).toString())).body;
      const job = uniqueKey('j');
      const batch = {
        idempotencyKey: uniqueKey('pay'),
        payments: [{ key: `${job}:0`, to: alice, amount: DCC.toString() }, { key: `${job}:1`, to: bob, amount: DCC.toString() }],
        feePerPayment: '1000',
      };
      const paid = await api.post<PostPaymentsReply>(`/holds/${hold.holdId}/payments`, batch);
      expect(paid.status).toBe(200);
      expect(paid.body).toMatchObject({ paid: 2, alreadyPaid: 0, hold: { posted: (2n * DCC + 2000n).toString(), remaining: (3n * DCC - 2000n).toString() } });
      expect(await api.post(`/holds/${hold.holdId}/payments`, batch)).toEqual(paid);
      const again = await api.post<PostPaymentsReply>(`/holds/${hold.holdId}/payments`, {
        idempotencyKey: uniqueKey('pay'),
        payments: [{ key: `${job}:1`, to: bob, amount: DCC.toString() }, { key: `${job}:2`, to: bob, amount: '5' }],
      });
      expect(again.body).toMatchObject({ paid: 1, alreadyPaid: 1 });
      expect(await balanceOf(alice)).toBe(DCC.toString());
      expect(await balanceOf(bob)).toBe((DCC + 5n).toString());
      expect(BigInt(await balanceOf(bank.ledger.feeAccount)) - feeBefore).toBe(2000n);
      const history = await anonymous.get<HistoryPage>(`/accounts/${alice}/history`);
      expect(history.body.entries).toEqual([expect.objectContaining({ kind: 'payment', amount: DCC.toString(), counterparty: owner.address, memo: `${job}:0` })]);
    });

    it('refuses a batch beyond what remains (ENOFUNDS, 402) and changes nothing', async () => {
      const owner = await funded(100n);
      const worker = randomAddress();
      const hold = (await newHold(owner.address, '100')).body;
      const job = uniqueKey('j');
      const batch = { idempotencyKey: uniqueKey('pay'), payments: [{ key: `${job}:0`, to: worker, amount: '60' }, { key: `${job}:1`, to: worker, amount: '40' }], feePerPayment: '1' };
      const refused = await api.post<ErrorBody>(`/holds/${hold.holdId}/payments`, batch);
      expect(refused.status).toBe(402);
      expect(refused.body.code).toBe(ErrorCode.ENOFUNDS);
      expect((await api.get<Hold>(`/holds/${hold.holdId}`)).body).toEqual(hold);
      expect(await balanceOf(worker)).toBe('0');
      // A refusal leaves no key behind: the same keys go through once the batch fits.
      const fits = await api.post<PostPaymentsReply>(`/holds/${hold.holdId}/payments`, { ...batch, feePerPayment: '0' });
      expect(fits.body).toMatchObject({ paid: 2, alreadyPaid: 0, hold: { remaining: '0', posted: '100' } });
      expect(await balanceOf(worker)).toBe('100');
    });

    it('releases the rest once: a retry gets the first outcome, another release EHOLDCLOSED (409), payments after it too', async () => {
      const owner = await funded(100n);
      const hold = (await newHold(owner.address, '70')).body;
      await api.post(`/holds/${hold.holdId}/payments`, { idempotencyKey: uniqueKey('pay'), payments: [{ key: uniqueKey('j'), to: randomAddress(), amount: '20' }] });
      const release = { idempotencyKey: uniqueKey('release') };
      const released = await api.post<Hold>(`/holds/${hold.holdId}/release`, release);
      expect(released.status).toBe(200);
      expect(released.body).toMatchObject({ status: 'released', remaining: '0', posted: '20', amount: '70' });
      expect(await balanceOf(owner.address)).toBe('80');
      expect(await api.post(`/holds/${hold.holdId}/release`, release)).toEqual(released);
      const second = await api.post<ErrorBody>(`/holds/${hold.holdId}/release`, { idempotencyKey: uniqueKey('release') });
      expect(second.status).toBe(409);
      expect(second.body.code).toBe(ErrorCode.EHOLDCLOSED);
      const late = await api.post<ErrorBody>(`/holds/${hold.holdId}/payments`, { idempotencyKey: uniqueKey('pay'), payments: [{ key: uniqueKey('j'), to: randomAddress(), amount: '1' }] });
      expect(late.body.code).toBe(ErrorCode.EHOLDCLOSED);
      expect(await balanceOf(owner.address)).toBe('80');
    });

    it('returns holds past their expiry to their account (expire-holds)', async () => {
      const owner = await funded(100n);
      const hold = (await newHold(owner.address, '40', { expiresAt: Date.now() + 300 })).body;
      expect(await balanceOf(owner.address)).toBe('60');
      const expired = await waitFor('the hold to expire', async () => {
        const reply = await api.get<Hold>(`/holds/${hold.holdId}`);
        return reply.body.status === 'expired' ? reply.body : null;
      });
      expect(expired).toMatchObject({ remaining: '0', posted: '0' });
      expect(await balanceOf(owner.address)).toBe('100');
    });
  });

  describe('operations', () => {
    it('publishes OpenAPI at /docs describing every endpoint', async () => {
      const page = await fetch(`${bank.bank.url}/docs`);
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('swagger-ui');
      const document = await anonymous.get<{ paths: Record<string, unknown> }>('/docs-json');
      expect(Object.keys(document.body.paths)).toEqual(
        expect.arrayContaining(['/accounts/{address}', '/accounts/{address}/history', '/health', '/holds', '/holds/{id}', '/holds/{id}/increase', '/holds/{id}/payments', '/holds/{id}/release', '/transfers']),
      );
    });

    it('answers /health with Postgres and Redis, and /metrics in Prometheus text', async () => {
      expect(await anonymous.get('/health')).toEqual({ status: 200, body: { status: 'ok', postgres: 'ok', redis: 'ok', down: [] } });
      const metrics = await fetch(`${bank.bank.url}/metrics`);
      expect(metrics.headers.get('content-type')).toContain('text/plain');
      const text = await metrics.text();
      expect(text).toContain('commune_bank_transfers_total{kind="transfer"}');
      expect(text).toContain('commune_bank_refusals_total{code="ENOFUNDS"}');
    });
  });
});
