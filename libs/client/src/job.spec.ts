import { inspect } from 'node:util';
import { jest } from '@jest/globals';
import BigNumber from 'bignumber.js';
import { CommuneError, ErrorCode, JobSpecSchema, Limits, deploySigningPayload, recoverRequestSigner, SignedKind } from '@commune/protocol';
import { createCompute } from './compute.js';
import { checkSlicePaymentOffer, Job, slicePaymentOfferToDcc } from './job.js';
import { contextFor, FakeLink, jobStatus, testWallet } from './test-support.js';

const codeMatching = (code: string) => expect.objectContaining({ code });
const jobId = 'j_0000000001';

function setup() {
  const link = new FakeLink();
  const compute = createCompute(contextFor(link));
  return { link, compute };
}

describe('slice payment offers', () => {
  it('accepts free offers in every spelling', () => {
    for (const offer of [undefined, 0, '0', '0.0', 0n, new BigNumber(0), { offerPerSlice: 0 }, new Number(0)]) {
      expect(() => checkSlicePaymentOffer(offer)).not.toThrow();
      expect(slicePaymentOfferToDcc(offer)).toBe('0');
    }
  });

  it('turns paid offers in every spelling into a DCC decimal string, exactly', () => {
    const cases: Array<[unknown, string]> = [
      [1, '1'],
      [0.0001, '0.0001'],
      [1e-7, '0.0000001'],
      ['5', '5'],
      [' 2.50 ', '2.5'],
      [3n, '3'],
      [new Number(0.25), '0.25'],
      [new BigNumber('1e-18'), '0.000000000000000001'],
      [new BigNumber('123456789012345678901234567890.123456789012345678'), '123456789012345678901234567890.123456789012345678'],
      [{ offerPerSlice: 2 }, '2'],
      [{ offerPerSlice: '0.000146537600000001' }, '0.000146537600000001'],
      [{ offerPerSlice: new BigNumber('7.5') }, '7.5'],
    ];
    for (const [offer, dcc] of cases) expect(slicePaymentOfferToDcc(offer)).toBe(dcc);
  });

  it('cuts a JS number (a binary approximation) to 18 decimals, but takes strings and BigNumbers exactly', () => {
    expect(0.1 * 3).toBe(0.30000000000000004);
    expect(slicePaymentOfferToDcc(0.1 * 3)).toBe('0.30000000000000004');
    expect(slicePaymentOfferToDcc(1.0001 * 0.00014653760000000003)).toBe('0.00014655225376'); // 0.00014655225376000004
    expect(() => slicePaymentOfferToDcc('0.0000000000000000001')).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => slicePaymentOfferToDcc(new BigNumber('1.0000000000000000001'))).toThrow(codeMatching(ErrorCode.EINVAL));
    // A positive number below the smallest unit is refused rather than made free.
    expect(() => slicePaymentOfferToDcc(1e-19)).toThrow(codeMatching(ErrorCode.EINVAL));
  });

  it('prices compute.marketValue / marketRate descriptors at a market rate (default the NYI 0.0001465376 DCC)', () => {
    const { compute } = setup();
    expect(slicePaymentOfferToDcc(compute.marketValue)).toBe('0.0001465376');
    expect(slicePaymentOfferToDcc(compute.marketValue(3))).toBe('0.0004396128');
    expect(slicePaymentOfferToDcc(compute.marketValue(10, 0.001))).toBe('0.001');
    expect(slicePaymentOfferToDcc(compute.marketRate(2))).toBe('0.0002930752');
    expect(slicePaymentOfferToDcc(compute.marketValue, '0.5')).toBe('0.5');
    expect(slicePaymentOfferToDcc(compute.marketValue(2, 0.75), '0.5')).toBe('0.75');
  });

  it('refuses malformed offers with EINVAL', () => {
    for (const offer of [-1, Number.NaN, Number.POSITIVE_INFINITY, 'lots', '', '1e', { price: 1 }, { offerPerSlice: -2 }, { offerPerSlice: 'x' }, true, Symbol('x')]) {
      expect(() => checkSlicePaymentOffer(offer)).toThrow(codeMatching(ErrorCode.EINVAL));
    }
  });
});

describe(Job.name, () => {
  describe('exec', () => {
    it('deploys a paid offer as a DCC decimal string; ENOBANK is the scheduler\'s answer, and the job can then be exec()\'d again', async () => {
      const { link, compute } = setup();
      const job = compute.for([1, 2], (i: number) => i);
      const refusals: unknown[] = [];
      job.on('ENOBANK', (error: unknown) => refusals.push(error));
      link.deployReply = new CommuneError(ErrorCode.ENOBANK, 'this scheduler has no bank');
      await expect(job.exec(new BigNumber('0.000146537600000001'))).rejects.toEqual(codeMatching(ErrorCode.ENOBANK));
      expect(link.deploys[0]!.job.slicePaymentOffer).toBe('0.000146537600000001');
      expect(refusals).toEqual([codeMatching(ErrorCode.ENOBANK)]);
      expect(job.id).toBeUndefined();

      link.deployReply = undefined;
      const running = job.exec({ offerPerSlice: 2 });
      const sink = await link.nextAttach();
      expect(link.deploys[1]!.job.slicePaymentOffer).toBe('2');
      expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(link.deploys[1]!.job), link.deploys[1]!.signature)).toBe(testWallet.address);
      link.stored = [{ sliceIndex: 0, value: 1 }, { sliceIndex: 1, value: 2 }];
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }));
      expect([...(await running)]).toEqual([1, 2]);
    });

    it('refuses a malformed offer with EINVAL before deploying', async () => {
      const { link, compute } = setup();
      const job = compute.for([1, 2], (i: number) => i);
      await expect(job.exec('0.0000000000000000001')).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
      await expect(job.exec({ offerPerSlice: -1 })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
      expect(() => job.setSlicePaymentOffer(-1)).toThrow(codeMatching(ErrorCode.EINVAL));
      expect(link.deploys).toHaveLength(0);
    });

    it('deploys a signed job spec and resolves with the result handle on complete', async () => {
      const { link, compute } = setup();
      const job = compute.for(1, 3, function (i: number) {
        return i * 10;
      });
      job.public = { name: 'tens' };
      const events: string[] = [];
      for (const name of ['accepted', 'status', 'result', 'resultsUpdated', 'complete']) job.on(name, () => events.push(name));
      const running = job.exec(0);
      const sink = await link.nextAttach();

      const [{ job: spec, signature }] = link.deploys;
      expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(spec), signature)).toBe(testWallet.address);
      expect(JobSpecSchema.parse(spec)).toEqual(spec);
      expect(spec).toMatchObject({
        owner: testWallet.address,
        inputSet: { kind: 'range', range: { start: 1, end: 3 } },
        arguments: [],
        slicePaymentOffer: '0',
        public: { name: 'tens' },
        collateResults: true,
      });
      expect(spec.expiresAt - spec.issuedAt).toBeLessThanOrEqual(Limits.maxSignatureLifetimeMs);
      expect(job.id).toBe(jobId);
      expect(job.receipt).toBe('receipt-1');
      expect(job.status).toMatchObject({ runStatus: 'running', total: 3 });

      sink.onStatus(jobStatus(jobId, { total: 3, distributed: 3, computed: 1 }));
      sink.onResults([
        { sliceIndex: 2, value: 30 },
        { sliceIndex: 0, value: 10 },
      ]);
      sink.onResults([{ sliceIndex: 1, value: 20 }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 3, distributed: 3, computed: 3 }));

      const results = await running;
      expect(inspect(results)).toBe('[ 10, 20, 30 ]');
      expect(results).toBe(job.results);
      expect(results.entries()).toEqual([
        ['1', 10],
        ['2', 20],
        ['3', 30],
      ]);
      expect(job.status).toEqual({ runStatus: 'finished', total: 3, distributed: 3, computed: 3 });
      expect(events).toEqual(['accepted', 'status', 'result', 'result', 'resultsUpdated', 'result', 'resultsUpdated', 'status', 'complete']);
      expect(link.detached).toEqual([jobId]);
      expect(link.pageRequests).toEqual([]);
    });

    it('calls listeners with this = the job, and gives result events the spec shape', async () => {
      const { link, compute } = setup();
      const job = compute.for([5], (i: number) => i);
      const seen: unknown[] = [];
      job.on('result', function (this: Job, event: unknown) {
        seen.push(this, event);
      });
      const running = job.exec();
      const sink = await link.nextAttach();
      sink.onResults([{ sliceIndex: 0, value: 'five' }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }));
      await running;
      expect(seen).toEqual([job, { address: jobId, task: 0, sort: 0, result: { request: 'main', result: 'five' } }]);
    });

    it('fetches results it missed from the scheduler before it completes', async () => {
      const { link, compute } = setup();
      link.deployReply = { jobId, total: 5, receipt: 'r' };
      link.stored = [0, 1, 2, 3, 4].map((i) => ({ sliceIndex: i, value: i * i }));
      const job = compute.do(5, (i: number) => i * i);
      const fetched: number[] = [];
      job.on('result', (event: { sort: number }) => fetched.push(event.sort));
      const running = job.exec();
      const sink = await link.nextAttach();
      sink.onResults([
        { sliceIndex: 0, value: 0 },
        { sliceIndex: 1, value: 1 },
        { sliceIndex: 3, value: 9 },
      ]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 5, computed: 5 }));
      expect(inspect(await running)).toBe('[ 0, 1, 4, 9, 16 ]');
      expect(fetched).toEqual([0, 1, 3, 2, 4]);
      // Starts at the first missing slice and skips slices it holds.
      expect(link.pageRequests.map((request) => request.after)).toEqual([1, 3]);
    });

    it('rejects with the failure code, emits it as an event, and keeps the partial results', async () => {
      const { link, compute } = setup();
      const job = compute.for([1, 2, 3], (i: number) => i);
      const codeEvents: unknown[] = [];
      job.on('ENOPROGRESS', (error: unknown) => codeEvents.push(error));
      const running = job.exec();
      const sink = await link.nextAttach();
      sink.onResults([{ sliceIndex: 0, value: 1 }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'failed', failure: { code: 'ENOPROGRESS', message: 'slice 1 stopped reporting progress' } }));
      const error = await running.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CommuneError);
      expect(error).toMatchObject({ code: ErrorCode.ENOPROGRESS, message: 'slice 1 stopped reporting progress' });
      expect(codeEvents).toEqual([error]);
      expect(job.status.runStatus).toBe('failed');
      expect(inspect(job.results)).toBe('[ 1, <2 empty items> ]');
    });

    it('does not crash on slice errors when nobody listens for them', async () => {
      const { link, compute } = setup();
      const job = compute.for([1], (i: number) => i);
      const running = job.exec();
      const sink = await link.nextAttach();
      expect(() => sink.onSliceError(0, { code: 'EWORKFUNCTION', name: 'TypeError', message: 'x is undefined', stack: 'at work' })).not.toThrow();
      const errors: unknown[] = [];
      job.on('error', (event: unknown) => errors.push(event));
      sink.onSliceError(0, { code: 'EWORKFUNCTION', name: 'TypeError', message: 'x is undefined', stack: 'at work' });
      expect(errors).toEqual([{ address: jobId, sliceIndex: 0, message: 'x is undefined', stack: 'at work', name: 'TypeError', code: 'EWORKFUNCTION' }]);
      link.stored = [{ sliceIndex: 0, value: 1 }];
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1 }));
      await expect(running).resolves.toEqual([1]);
    });

    it('delivers console lines, folded repeats as {same}, and custom events on job.work', async () => {
      const { link, compute } = setup();
      const job = compute.for([1], (i: number) => i);
      const lines: unknown[] = [];
      const custom: unknown[] = [];
      job.on('console', (line: unknown) => lines.push(line));
      job.work.on('progress-note', function (this: unknown, value: unknown) {
        custom.push(this, value);
      });
      job.work.once('once', function (this: unknown, value: unknown) {
        custom.push('once', this, value);
      });
      const running = job.exec();
      const sink = await link.nextAttach();
      sink.onConsole([
        { sliceIndex: 0, level: 'warn', message: 'careful' },
        { sliceIndex: 0, level: 'warn', message: 'careful', same: 2 },
      ]);
      sink.onCustom([
        { sliceIndex: 0, event: 'progress-note', value: { half: true } },
        { sliceIndex: 0, event: 'once', value: 1 },
        { sliceIndex: 0, event: 'once', value: 2 },
        { sliceIndex: 0, event: 'error', value: 'nobody listens' },
      ]);
      sink.onResults([{ sliceIndex: 0, value: 1 }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }));
      await running;
      expect(lines).toEqual([{ address: jobId, sliceIndex: 0, level: 'warn', message: 'careful' }, { same: 2 }]);
      expect(custom).toEqual([job, { half: true }, 'once', job, 1]);
    });

    it('a deploy the scheduler refuses rejects with its code, emits it, and can be fixed and retried', async () => {
      const { link, compute } = setup();
      link.deployReply = new CommuneError(ErrorCode.EWORKTOOBIG, 'too big');
      const job = compute.for([1], (i: number) => i);
      const emitted: unknown[] = [];
      job.on('EWORKTOOBIG', (error: unknown) => emitted.push(error));
      await expect(job.exec()).rejects.toEqual(codeMatching(ErrorCode.EWORKTOOBIG));
      expect(emitted).toHaveLength(1);
      expect(job.status.runStatus).toBe('new');
      link.deployReply = { jobId, total: 1, receipt: 'r' };
      const running = job.exec();
      const sink = await link.nextAttach();
      sink.onResults([{ sliceIndex: 0, value: 7 }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }));
      await expect(running).resolves.toEqual([7]);
      expect(link.deploys).toHaveLength(2);
    });

    it('exec() on a deployed job returns the same promise', async () => {
      const { link, compute } = setup();
      const job = compute.for([1], (i: number) => i);
      const first = job.exec();
      expect(job.exec()).toBe(first);
      const sink = await link.nextAttach();
      sink.onResults([{ sliceIndex: 0, value: 1 }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }));
      await first;
      expect(job.exec()).toBe(first);
      expect(link.deploys).toHaveLength(1);
    });

    it('checks the limits before deploying', async () => {
      const { link, compute } = setup();
      const huge = 'x'.repeat(Limits.maxWorkBytes);
      await expect(compute.for([1], (i: number) => i, [huge]).exec()).rejects.toEqual(codeMatching(ErrorCode.EWORKTOOBIG));
      await expect(compute.for([1], (i: number) => i, [10n]).exec()).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
      expect(link.deploys).toHaveLength(0);
    });

    it('sends what it signed: arguments and array inputs are normalised through JSON', async () => {
      const { link, compute } = setup();
      link.deployReply = { jobId, total: 2, receipt: 'r' };
      const when = new Date(0);
      const job = compute.for([when, { a: undefined, b: 1 }], (i: unknown) => i, [when, undefined]);
      const running = job.exec();
      const sink = await link.nextAttach();
      const [{ job: spec }] = link.deploys;
      expect(spec.arguments).toEqual(['1970-01-01T00:00:00.000Z', null]);
      expect(spec.inputSet).toEqual({ kind: 'array', values: ['1970-01-01T00:00:00.000Z', { b: 1 }] });
      sink.onResults([
        { sliceIndex: 0, value: 'd' },
        { sliceIndex: 1, value: 'o' },
      ]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }));
      const results = await running;
      expect(results.keys()).toEqual(['1970-01-01T00:00:00.000Z', { b: 1 }]);
    });

    it('an empty input set completes at once with no results and no deploy', async () => {
      const { link, compute } = setup();
      const job = compute.for([], (i: number) => i);
      const completed = jest.fn();
      job.on('complete', completed);
      await expect(job.exec()).resolves.toEqual([]);
      expect(completed).toHaveBeenCalledTimes(1);
      expect(link.deploys).toHaveLength(0);
    });
  });

  describe('cancel', () => {
    it('signs a cancel action, emits cancel once, and exec() rejects with ECANCELLED', async () => {
      const { link, compute } = setup();
      const job = compute.for([1, 2], (i: number) => i);
      const cancels = jest.fn();
      job.on('cancel', cancels);
      const running = job.exec();
      await link.nextAttach();
      await job.cancel();
      const [action] = link.actions;
      expect(action.request).toMatchObject({ action: 'cancel', jobId });
      expect(recoverRequestSigner(SignedKind.jobAction, action.request, action.signature)).toBe(testWallet.address);
      await expect(running).rejects.toEqual(codeMatching(ErrorCode.ECANCELLED));
      // job:end arriving afterwards changes nothing.
      link.sinks.get(jobId)?.onEnd(jobStatus(jobId, { runStatus: 'cancelled' }));
      expect(cancels).toHaveBeenCalledTimes(1);
      expect(job.status.runStatus).toBe('cancelled');
    });

    it('refuses to cancel a job that was never deployed', async () => {
      const { compute } = setup();
      await expect(compute.for([1], (i: number) => i).cancel()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
    });

    it('compute.cancel(id) signs the same action for a job id', async () => {
      const { link, compute } = setup();
      await compute.cancel(jobId);
      expect(link.actions[0].request).toMatchObject({ action: 'cancel', jobId });
    });
  });

  describe('results.fetch', () => {
    it('fetches a range of slices of a job that does not collate, emitting results when asked', async () => {
      const { link, compute } = setup();
      link.deployReply = { jobId, total: 4, receipt: 'r' };
      link.stored = [0, 1, 2, 3].map((i) => ({ sliceIndex: i, value: `r${i}` }));
      const job = compute.do(4, (i: number) => i);
      job.collateResults = false;
      const results: number[] = [];
      job.on('result', (event: { sort: number }) => results.push(event.sort));
      const running = job.exec();
      const sink = await link.nextAttach();
      sink.onResults([{ sliceIndex: 3, value: 'r3' }]);
      sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 4, computed: 4 }));
      const handle = await running;
      expect(link.deploys[0].job.collateResults).toBe(false);
      expect(inspect(handle)).toBe('[ <4 empty items> ]');
      expect(results).toEqual([3]);
      await handle.fetch({ start: 1, end: 3, step: 2 }, true);
      expect(inspect(handle)).toBe("[ <1 empty item>, 'r1', <1 empty item>, 'r3' ]");
      expect(results).toEqual([3, 1, 3]);
      await handle.fetch();
      expect(inspect(handle)).toBe("[ 'r0', 'r1', 'r2', 'r3' ]");
    });
  });
});
