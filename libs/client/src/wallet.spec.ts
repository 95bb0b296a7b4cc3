import { jest } from '@jest/globals';
import BigNumber from 'bignumber.js';
import { Wallet } from 'ethers';
import { ErrorCode, recoverRequestSigner, SignedKind, SignedTransferSchema, type SignedTransfer } from '@commune/protocol';
import { init } from './init.js';
import { testWallet } from './test-support.js';
import { createWallet } from './wallet.js';

/** The wallet module against a scripted bank (a fake fetch). */

const codeMatching = (code: string) => expect.objectContaining({ code });
const bankUrl = new URL('http://bank.test:4100');
const other = new Wallet('0x' + '22'.repeat(32));

interface Sent {
  method: string;
  url: string;
  body: unknown;
}

function setup(answer: (request: Sent) => Response | Promise<Response>) {
  const sent: Sent[] = [];
  const fakeFetch = jest.fn(async (input: string | URL | Request, requestInit?: RequestInit) => {
    const request = { method: requestInit?.method ?? 'GET', url: String(input), body: requestInit?.body === undefined ? undefined : JSON.parse(String(requestInit.body)) };
    sent.push(request);
    return answer(request);
  });
  const wallet = createWallet({ home: '/tmp/commune-test-home', account: Promise.resolve(testWallet), bank: bankUrl, bankLink: { fetch: fakeFetch as typeof fetch } });
  return { wallet, sent, fakeFetch };
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

describe('wallet.balance', () => {
  it('reads the payment account at GET /accounts/:address and gives DCC', async () => {
    const { wallet, sent } = setup(() => json({ address: testWallet.address, balance: '1500000000000000001' }));
    expect(await wallet.balance()).toBe('1.500000000000000001');
    expect(sent).toEqual([{ method: 'GET', url: `http://bank.test:4100/accounts/${testWallet.address}`, body: undefined }]);
  });

  it('reads any address (checksummed on the wire), and refuses what is not an address (EINVAL)', async () => {
    const { wallet, sent } = setup(() => json({ address: other.address, balance: '0' }));
    expect(await wallet.balance(other.address.toLowerCase())).toBe('0');
    expect(sent[0]!.url).toBe(`http://bank.test:4100/accounts/${other.address}`);
    await expect(wallet.balance('0x1234')).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    expect(sent).toHaveLength(1);
  });

  it('turns the bank\'s error replies into their codes, and an unreachable bank into EBANK', async () => {
    const { wallet } = setup(() => json({ ok: false, code: 'EINVAL', message: 'bad address' }, 400));
    await expect(wallet.balance()).rejects.toEqual(expect.objectContaining({ code: ErrorCode.EINVAL, message: 'bad address' }));
    const down = setup(() => {
      throw new TypeError('fetch failed');
    });
    await expect(down.wallet.balance()).rejects.toEqual(expect.objectContaining({ code: ErrorCode.EBANK, message: expect.stringMatching(/bank could not be reached.*fetch failed/) }));
    const odd = setup(() => json({ address: testWallet.address, balance: '-1' }));
    await expect(odd.wallet.balance()).rejects.toEqual(codeMatching(ErrorCode.EBANK));
  });
});

describe('wallet.transfer', () => {
  const receiptFor = (signed: SignedTransfer) => ({ transferId: '17', from: signed.transfer.from, to: signed.transfer.to, amount: signed.transfer.amount, createdAt: '2025-01-01T00:00:00.000Z' });

  it('signs a Transfer with the payment account and POSTs it to /transfers; the receipt is in DCC', async () => {
    const { wallet, sent } = setup((request) => json(receiptFor(request.body as SignedTransfer), 201));
    const before = Date.now();
    const receipt = await wallet.transfer(other.address.toLowerCase(), '0.25', { memo: 'for the job' });
    expect(receipt).toEqual({ transferId: '17', from: testWallet.address, to: other.address, amount: '0.25', createdAt: '2025-01-01T00:00:00.000Z' });
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ method: 'POST', url: 'http://bank.test:4100/transfers' });
    const signed = SignedTransferSchema.parse(sent[0]!.body);
    expect(signed.transfer).toEqual({
      from: testWallet.address,
      to: other.address,
      amount: '250000000000000000',
      memo: 'for the job',
      idempotencyKey: expect.stringMatching(/^t_[a-z0-9]{24}$/),
      expiresAt: expect.any(Number),
    });
    expect(signed.transfer.expiresAt).toBeGreaterThan(before);
    expect(signed.transfer.expiresAt - before).toBeLessThanOrEqual(10 * 60_000);
    // Signed as a transfer (over the body as sent), and so never valid as a withdrawal.
    const sentTransfer = (sent[0]!.body as SignedTransfer).transfer;
    expect(recoverRequestSigner(SignedKind.transfer, sentTransfer, signed.signature)).toBe(testWallet.address);
    expect(recoverRequestSigner(SignedKind.withdrawal, sentTransfer, signed.signature)).not.toBe(testWallet.address);
  });

  it('takes numbers, bigints and BigNumbers, another payer (options.from) and an idempotency key', async () => {
    const { wallet, sent } = setup((request) => json(receiptFor(request.body as SignedTransfer), 201));
    await wallet.transfer(other.address, 2n);
    await wallet.transfer(other.address, new BigNumber('0.000000000000000001'));
    await wallet.transfer(testWallet.address, 1.5, { from: other, idempotencyKey: 'refund:job-1' });
    const transfers = sent.map((request) => SignedTransferSchema.parse(request.body));
    expect(transfers.map((signed) => signed.transfer.amount)).toEqual(['2000000000000000000', '1', '1500000000000000000']);
    expect(transfers[2]!.transfer).toMatchObject({ from: other.address, to: testWallet.address, idempotencyKey: 'refund:job-1' });
    expect(recoverRequestSigner(SignedKind.transfer, (sent[2]!.body as SignedTransfer).transfer, transfers[2]!.signature)).toBe(other.address);
  });

  it('refuses a zero, negative or over-precise amount, a bad address or key (EINVAL) without asking the bank', async () => {
    const { wallet, sent } = setup(() => json({}));
    for (const amount of [0, -1, '1.0000000000000000001', 'lots']) await expect(wallet.transfer(other.address, amount)).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(wallet.transfer('bob', 1)).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(wallet.transfer(other.address, 1, { idempotencyKey: 'short' })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(wallet.transfer(other.address, 1, { memo: 'x'.repeat(201) })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    expect(sent).toEqual([]);
  });

  it('rejects ENOFUNDS when the bank says the payer cannot cover it', async () => {
    const { wallet } = setup(() => json({ ok: false, code: 'ENOFUNDS', message: 'insufficient funds' }, 402));
    await expect(wallet.transfer(other.address, 5)).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, message: 'insufficient funds' }));
  });

  it('sends the same signed transfer again when the bank cannot be reached (its idempotency key makes that safe)', async () => {
    let calls = 0;
    const { wallet, sent } = setup((request) => {
      calls++;
      if (calls === 1) throw new TypeError('socket hang up');
      return json(receiptFor(request.body as SignedTransfer), 200);
    });
    await wallet.transfer(other.address, 1);
    expect(sent).toHaveLength(2);
    expect(sent[1]!.body).toEqual(sent[0]!.body);
  });
});

describe('wallet.history', () => {
  it('reads a page of ledger entries with before and limit, amounts in DCC', async () => {
    const entry = { id: '9', transferId: '4', amount: '-1500000000000000000', balanceAfter: '500000000000000000', kind: 'hold', counterparty: 'hold:h1', memo: null, createdAt: '2025-01-01T00:00:00.000Z' };
    const { wallet, sent } = setup(() => json({ address: testWallet.address, entries: [entry], nextBefore: '9' }));
    const page = await wallet.history(undefined, { before: '12', limit: 1 });
    expect(page).toEqual({ address: testWallet.address, entries: [{ ...entry, amount: '-1.5', balanceAfter: '0.5' }], nextBefore: '9' });
    expect(sent[0]!.url).toBe(`http://bank.test:4100/accounts/${testWallet.address}/history?before=12&limit=1`);
    await wallet.history(other.address);
    expect(sent[1]!.url).toBe(`http://bank.test:4100/accounts/${other.address}/history`);
    await expect(wallet.history(undefined, { limit: 0 })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(wallet.history(undefined, { before: 'x' })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });
});

describe('init({ bank })', () => {
  const saved = process.env.COMMUNE_BANK_URL;
  afterEach(() => {
    if (saved === undefined) delete process.env.COMMUNE_BANK_URL;
    else process.env.COMMUNE_BANK_URL = saved;
  });

  it('takes the bank URL from the option, else COMMUNE_BANK_URL, else http://localhost:4100', async () => {
    delete process.env.COMMUNE_BANK_URL;
    expect((await init({ keystore: testWallet })).wallet.bank.href).toBe('http://localhost:4100/');
    process.env.COMMUNE_BANK_URL = 'https://bank.example/';
    expect((await init({ keystore: testWallet })).wallet.bank.href).toBe('https://bank.example/');
    const { wallet, compute } = await init({ keystore: testWallet, bank: 'http://bank.test:4100' });
    expect(wallet.bank.href).toBe('http://bank.test:4100/');
    expect(compute.for([1], (x: number) => x).bank.href).toBe('http://bank.test:4100/');
    await expect(init({ keystore: testWallet, bank: 'ftp://bank' })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });

  it('wallet.balance goes to that bank', async () => {
    const realFetch = globalThis.fetch;
    const requested: string[] = [];
    globalThis.fetch = jest.fn(async (input: string | URL | Request) => {
      requested.push(String(input));
      return json({ address: testWallet.address, balance: '42' });
    }) as typeof fetch;
    try {
      const { wallet } = await init({ keystore: testWallet, bank: 'http://bank.test:4100/prefix' });
      expect(await wallet.balance()).toBe('0.000000000000000042');
      expect(requested).toEqual([`http://bank.test:4100/prefix/accounts/${testWallet.address}`]);
    } finally {
      globalThis.fetch = realFetch;
    }
  });
});
