import { Wallet } from 'ethers';
import { jest } from '@jest/globals';
import { ErrorCode, SignedKind, signRequest, type JobInfo, type WorkValueQuote } from '@commune/protocol';
import { createCompute } from './compute.js';
import { SchedulerConnection } from './connection.js';
import { checkSlicePaymentOffer, Job, type NoProgressDataEvent, type NoProgressEvent } from './job.js';
import { calculateSlicePayment } from './market.js';
import { sliceSetOf } from './owner-api.js';
import { contextFor, FakeLink, FakeSocket, jobStatus, testWallet, waitFor } from './test-support.js';

/**
 * The Compute API's job/result/static part in the SDK, against a scripted scheduler (FakeLink):
 * compute.resume / status form 2 / getJobInfo / getSliceInfo / marketRate / marketValue /
 * getMarketValue / calculateSlicePayment, result handles' list/delete/fetch/stat, and the job
 * handle's properties, methods and events.
 */

const codeMatching = (code: string) => expect.objectContaining({ code });
const jobId = 'j_0000000001';

function setup() {
  const link = new FakeLink();
  const compute = createCompute(contextFor(link));
  return { link, compute };
}

/** Parses a REST path the SDK requested: its route and query parameters. */
function route(path: string): { route: string; query: Record<string, string> } {
  const [base, search] = path.split('?');
  return { route: base!, query: Object.fromEntries(new URLSearchParams(search ?? '')) };
}

function infoOf(overrides: Partial<JobInfo> = {}): JobInfo {
  return {
    jobId,
    status: jobStatus(jobId, { total: 4, computed: 2, distributed: 3 }),
    work: '(i) => i * 2',
    arguments: [],
    inputSet: { kind: 'range', range: { start: 0, end: 3 } },
    requirements: {},
    public: { name: 'resumed' },
    slicePaymentOffer: '0',
    collateResults: true,
    receipt: '0x' + 'ab'.repeat(32),
    ...overrides,
  };
}

describe('compute.marketRate and compute.marketValue (SlicePaymentDescriptor objects)', () => {
  it('are the NYI market rate 0.0001465376 DCC as properties, times factor / ratio (capped at max) when called', () => {
    const { compute } = setup();
    expect(compute.marketRate.offerPerSlice).toBe(0.0001465376);
    expect(compute.marketRate(3)).toMatchObject({ offerPerSlice: 0.0004396128, factor: 3, marketRate: true });
    expect(compute.marketValue.offerPerSlice).toBe(0.0001465376);
    expect(compute.marketValue(2)).toMatchObject({ offerPerSlice: 0.0002930752, ratio: 2, marketValue: true });
    expect(compute.marketValue(2, 0.0002).offerPerSlice).toBe(0.0002);
  });
  it('refuse a negative or non-numeric factor with EINVAL', () => {
    const { compute } = setup();
    expect(() => compute.marketRate(-1)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => compute.marketValue(Number.NaN)).toThrow(codeMatching(ErrorCode.EINVAL));
  });
  it('are valid offers in every form', () => {
    const { compute } = setup();
    for (const offer of [compute.marketRate, compute.marketRate(0.5), compute.marketValue, compute.marketValue(1, 2)]) {
      expect(() => checkSlicePaymentOffer(offer)).not.toThrow();
    }
  });

  const schedulerKey = new Wallet('0x' + '33'.repeat(32));
  /** A quote at `perSecond` DCC per reference-core second. */
  async function quoteAt(perSecond: string): Promise<WorkValueQuote> {
    const hour = (Number(perSecond) * 3600).toString();
    const signed = { CPUHour: hour, GPUHour: hour, InputMByte: perSecond, OutputMByte: perSecond, currency: 'DCC' as const, issuedAt: Date.now(), quoteExpiry: Date.now() + 600_000, signer: schedulerKey.address };
    return { ...signed, signature: await signRequest(schedulerKey, SignedKind.marketQuote, signed) };
  }

  it.each([
    ['compute.marketValue (no limit)', (c: ReturnType<typeof setup>['compute']) => c.marketValue, '0.0002'],
    ['compute.marketValue(3, 0.0005)', (c: ReturnType<typeof setup>['compute']) => c.marketValue(3, 0.0005), '0.0005'],
    ['compute.marketValue(1.5)', (c: ReturnType<typeof setup>['compute']) => c.marketValue(1.5), '0.0003'],
    ['compute.marketRate', (c: ReturnType<typeof setup>['compute']) => c.marketRate, '0.0002'],
    ['compute.marketRate(2)', (c: ReturnType<typeof setup>['compute']) => c.marketRate(2), '0.0004'],
  ])('exec(%s) deploys the scheduler\'s current market rate (CPUHour / 3600) as a fixed offer', async (_name, offerOf, expected) => {
    const { link, compute } = setup();
    const quote = await quoteAt('0.0002');
    link.restReply = (method, path) => {
      if (method === 'GET' && path === 'market/value') return quote;
      throw new Error(`unexpected ${method} ${path}`);
    };
    const job = compute.for([1], (x: number) => x);
    const running = job.exec(offerOf(compute));
    const sink = await link.nextAttach();
    expect(link.restRequests[0]).toEqual({ method: 'GET', path: 'market/value', signer: undefined });
    expect(link.deploys[0]!.job.slicePaymentOffer).toBe(expected);
    sink.onResults([{ sliceIndex: 0, value: 1 }]);
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }));
    await running;
  });

  it('exec(compute.marketValue) rejects (and deploys nothing) when the quote cannot be had', async () => {
    const { link, compute } = setup();
    const job = compute.for([1], (x: number) => x);
    await expect(job.exec(compute.marketValue)).rejects.toEqual(codeMatching(ErrorCode.ENOTFOUND));
    expect(link.deploys).toHaveLength(0);
  });
});

describe(calculateSlicePayment.name, () => {
  const value = { CPUHour: '0.52753536', GPUHour: '1', InputMByte: '0.0001465376', OutputMByte: '0.0002' };
  it('sums each resource times its price, exactly', () => {
    expect(calculateSlicePayment({ cpuHours: 0.5, gpuHours: 0.25, inputMBytes: 2, outputMBytes: 10 }, value)).toBe(0.5160607552); // 0.26376768 + 0.25 + 0.0002930752 + 0.002
    expect(calculateSlicePayment({ cpuHours: 2 }, value)).toBe(1.05507072);
  });
  it('refuses negative or non-numeric amounts with EINVAL', () => {
    expect(() => calculateSlicePayment({ cpuHours: -1 }, value)).toThrow(codeMatching(ErrorCode.EINVAL));
    expect(() => calculateSlicePayment({ cpuHours: 1 }, { ...value, CPUHour: 'free' })).toThrow(codeMatching(ErrorCode.EINVAL));
  });
});

describe('compute.getMarketValue', () => {
  const schedulerKey = new Wallet('0x' + '33'.repeat(32));
  async function quote(overrides: Partial<WorkValueQuote> = {}): Promise<WorkValueQuote> {
    const signed = { CPUHour: '0.52753536', GPUHour: '0.52753536', InputMByte: '0.0001465376', OutputMByte: '0.0001465376', currency: 'DCC' as const, issuedAt: Date.now(), quoteExpiry: Date.now() + 600_000, signer: schedulerKey.address };
    return { ...signed, signature: await signRequest(schedulerKey, SignedKind.marketQuote, signed), ...overrides };
  }
  it('resolves with the scheduler-signed WorkValueQuote from GET market/value', async () => {
    const { link, compute } = setup();
    const expected = await quote();
    link.restReply = () => expected;
    expect(await compute.getMarketValue()).toEqual(expected);
    expect(link.restRequests).toEqual([{ method: 'GET', path: 'market/value', signer: undefined }]);
  });
  it('refuses a quote whose fields were changed after signing (EBADSIGNATURE), or that has expired (EEXPIRED)', async () => {
    const { link, compute } = setup();
    const tampered = await quote();
    link.restReply = () => ({ ...tampered, CPUHour: '0.000001' });
    await expect(compute.getMarketValue()).rejects.toEqual(codeMatching(ErrorCode.EBADSIGNATURE));
    const signed = { CPUHour: '1', GPUHour: '1', InputMByte: '1', OutputMByte: '1', currency: 'DCC' as const, issuedAt: 1, quoteExpiry: 2, signer: schedulerKey.address };
    const expired = { ...signed, signature: await signRequest(schedulerKey, SignedKind.marketQuote, signed) };
    link.restReply = () => expired;
    await expect(compute.getMarketValue()).rejects.toEqual(codeMatching(ErrorCode.EEXPIRED));
  });
});

describe('compute.status', () => {
  it('form 1 reads one job by id or handle', async () => {
    const { compute } = setup();
    expect(await compute.status(jobId)).toMatchObject({ jobId });
  });
  it('form 2 lists a payment account\'s jobs with a request signed by it, between startTime and endTime', async () => {
    const { link, compute } = setup();
    const account = Wallet.createRandom();
    link.restReply = () => ({ owner: account.address, jobs: [jobStatus(jobId, { owner: account.address })] });
    const jobs = await compute.status(account, new Date(1000), 5000);
    expect(jobs).toEqual([jobStatus(jobId, { owner: account.address })]);
    const [sent] = link.restRequests;
    expect(sent).toMatchObject({ method: 'GET', signer: account.address });
    expect(route(sent!.path)).toEqual({ route: 'jobs', query: { owner: account.address, from: '1000', to: '5000' } });
  });
  it('form 2 with an address signs with the default payment account', async () => {
    const { link, compute } = setup();
    link.restReply = () => ({ owner: testWallet.address, jobs: [] });
    expect(await compute.status(testWallet.address.toLowerCase())).toEqual([]);
    expect(link.restRequests[0]).toMatchObject({ signer: testWallet.address, path: `jobs?owner=${testWallet.address}` });
  });
  it('refuses times that are not ms or Dates with EINVAL', async () => {
    const { compute } = setup();
    await expect(compute.status(testWallet, Number.NaN)).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });
});

describe('compute.getJobInfo and compute.getSliceInfo', () => {
  it('getJobInfo signs GET jobs/:id/info', async () => {
    const { link, compute } = setup();
    link.restReply = () => infoOf();
    expect(await compute.getJobInfo(jobId)).toEqual(infoOf());
    expect(link.restRequests).toEqual([{ method: 'GET', path: `jobs/${jobId}/info`, signer: testWallet.address }]);
    await expect(compute.getJobInfo('nope')).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });
  it('getSliceInfo follows the pages to the end', async () => {
    const { link, compute } = setup();
    const slice = (sliceIndex: number) => ({ sliceIndex, status: 'computed', attempts: 1, distributedTime: null, computedTime: null, elapsedMs: 1, failures: [] });
    link.restReply = (_method, path) => {
      const after = Number(route(path).query.after);
      return after === -1
        ? { jobId, status: jobStatus(jobId), slices: [slice(0), slice(1)], nextAfter: 1 }
        : { jobId, status: jobStatus(jobId), slices: [slice(5)], nextAfter: null };
    };
    const info = await compute.getSliceInfo(jobId);
    expect(info.slices.map((s) => s.sliceIndex)).toEqual([0, 1, 5]);
    expect(link.restRequests.map((r) => route(r.path).query.after)).toEqual(['-1', '1']);
  });
});

describe('result handles: list, delete, stat (against the scheduler)', () => {
  async function finishedJob() {
    const { link, compute } = setup();
    const job = compute.for(0, 9, (i: number) => i);
    const running = job.exec();
    const sink = await link.nextAttach();
    sink.onResults(Array.from({ length: 10 }, (_, i) => ({ sliceIndex: i, value: i })));
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 10, computed: 10 }));
    return { link, job, results: await running };
  }

  it('list(range) asks for the slices in a range and gives a sparse range object, page after page', async () => {
    const { link, results } = await finishedJob();
    link.restReply = (_method, path) => {
      const after = Number(route(path).query.after);
      return after === -1
        ? { jobId, slices: { sparse: [{ start: 2, end: 3 }] }, count: 2, nextAfter: 2 }
        : { jobId, slices: { sparse: [{ start: 5, end: 5 }] }, count: 1, nextAfter: null };
    };
    expect(await results.list({ start: 2, end: 5 })).toEqual({ sparse: [{ start: 2, end: 3 }, { start: 5, end: 5 }] });
    const [first] = link.restRequests;
    expect(first).toMatchObject({ method: 'GET', signer: testWallet.address });
    expect(route(first!.path)).toEqual({ route: `jobs/${jobId}/results/list`, query: { slices: JSON.stringify({ sparse: [{ start: 2, end: 5 }] }), after: '-1', limit: '10000' } });
  });
  it('delete(range) deletes on the scheduler and keeps the handle\'s copies', async () => {
    const { link, results } = await finishedJob();
    link.restReply = () => ({ jobId, deleted: 3 });
    expect(await results.delete({ sparse: [{ start: 0, end: 2 }] })).toBe(3);
    expect(link.restRequests[0]).toMatchObject({ method: 'DELETE', path: `jobs/${jobId}/results?slices=${encodeURIComponent(JSON.stringify({ sparse: [{ start: 0, end: 2 }] }))}` });
    expect(Array.from(results)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
  it('stat(range) gives {distributedTime, computedTime, payment} per slice in a handle with the output set\'s API', async () => {
    const { link, results } = await finishedJob();
    link.restReply = () => ({
      jobId,
      stats: [{ sliceIndex: 4, distributedTime: '2026-01-01T00:00:00.000Z', computedTime: '2026-01-01T00:00:01.000Z', payment: '0' }],
      nextAfter: null,
    });
    const stats = await results.stat({ start: 4, end: 4 });
    expect(stats[4]).toEqual({ distributedTime: new Date('2026-01-01T00:00:00.000Z'), computedTime: new Date('2026-01-01T00:00:01.000Z'), payment: '0' });
    expect(stats.lookupValue(4)).toBe(stats[4]);
    expect(stats.key(4)).toBe('4');
    expect(Object.keys(stats)).toEqual(['4']);
  });
  it('reject with EJOBSTATE for a run whose results no scheduler holds', async () => {
    const { compute } = setup();
    // An empty job completes at once without deploying (localExec runs are covered in the conformance suite).
    const empty = await compute.for([], (x: number) => x).exec();
    await expect(empty.list()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
    await expect(empty.stat()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
    await expect(empty.delete()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
  });
});

describe(sliceSetOf.name, () => {
  it('takes a range object or a sparse range object over slice numbers', () => {
    expect(sliceSetOf(undefined)).toBeUndefined();
    expect(sliceSetOf({ start: 0, end: 9 })).toEqual({ sparse: [{ start: 0, end: 9 }] });
    expect(sliceSetOf({ start: 0, end: 9, step: 1 })).toEqual({ sparse: [{ start: 0, end: 9 }] });
    expect(sliceSetOf({ sparse: [{ start: 0, end: 9, step: 3 }, { start: 20, end: 20 }] })).toEqual({ sparse: [{ start: 0, end: 9, step: 3 }, { start: 20, end: 20 }] });
  });
  it('refuses descending, negative, fractional or too many ranges with EINVAL', () => {
    for (const bad of [{ start: 5, end: 1 }, { start: -1, end: 1 }, { start: 0.5, end: 1 }, { start: 0, end: 1, step: 0 }, { sparse: Array(257).fill({ start: 0, end: 0 }) }]) {
      expect(() => sliceSetOf(bad)).toThrow(codeMatching(ErrorCode.EINVAL));
    }
  });
});

describe('compute.resume', () => {
  it('makes a handle whose exec() loads the job, follows it, fetches earlier results and resolves with all of them', async () => {
    const { link, compute } = setup();
    link.restReply = () => infoOf();
    link.stored = [{ sliceIndex: 0, value: 0 }, { sliceIndex: 1, value: 2 }];
    link.followReply = () => jobStatus(jobId, { total: 4, computed: 2 });
    const job = compute.resume(jobId);
    expect(job).toBeInstanceOf(Job);
    expect(job.id).toBe(jobId);
    const states: string[] = [];
    const results: number[] = [];
    job.on('readystatechange', (state: string) => states.push(state));
    job.on('result', (event: { sort: number }) => results.push(event.sort));
    const running = job.exec();
    const sink = await link.nextAttach();
    expect(link.follows).toEqual([jobId]);
    expect(link.resultsWanted.get(jobId)).toBe(true);
    expect(link.restRequests[0]).toEqual({ method: 'GET', path: `jobs/${jobId}/info`, signer: testWallet.address });
    await waitFor('the earlier results', () => results.length === 2);
    sink.onResults([{ sliceIndex: 2, value: 4 }]);
    link.stored.push({ sliceIndex: 3, value: 6 }); // missed as an event: fetched when the job ends
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 4, computed: 4 }));
    expect(Array.from(await running)).toEqual([0, 2, 4, 6]);
    expect(results).toEqual([0, 1, 2, 3]);
    expect(states).toEqual(['exec', 'init', 'preauth', 'listeners', 'deployed']);
    expect(job).toMatchObject({ workSource: '(i) => i * 2', receipt: infoOf().receipt, public: { name: 'resumed' }, collateResults: true });
    expect(link.deploys).toEqual([]);
  });
  it('settles at once for a job that already ended, with every result', async () => {
    const { link, compute } = setup();
    link.restReply = () => infoOf({ status: jobStatus(jobId, { runStatus: 'finished', total: 4, computed: 4 }) });
    link.stored = [0, 1, 2, 3].map((i) => ({ sliceIndex: i, value: i * 2 }));
    link.followReply = () => jobStatus(jobId, { runStatus: 'finished', total: 4, computed: 4 });
    expect(Array.from(await compute.resume(jobId).exec())).toEqual([0, 2, 4, 6]);
  });
  it('follows a non-collating job without its results and fetches nothing', async () => {
    const { link, compute } = setup();
    link.restReply = () => infoOf({ collateResults: false });
    link.followReply = () => jobStatus(jobId, { runStatus: 'finished', total: 4, computed: 4 });
    link.stored = [{ sliceIndex: 0, value: 0 }];
    const results = await compute.resume(jobId).exec();
    expect(link.resultsWanted.get(jobId)).toBe(false);
    expect(Object.keys(results)).toEqual([]);
    expect(link.pageRequests).toEqual([]);
  });
  it('refuses an id that is not a job id (EINVAL) and localExec() of a resumed job (EJOBSTATE)', async () => {
    const { compute } = setup();
    expect(() => compute.resume('not-a-job')).toThrow(codeMatching(ErrorCode.EINVAL));
    await expect(compute.resume(jobId).localExec()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
  });
  it('cancels a resumed handle before its exec() with a signed action', async () => {
    const { link, compute } = setup();
    const cancelled = jest.fn();
    const job = compute.resume(jobId);
    job.on('cancel', cancelled);
    await job.cancel();
    expect(link.actions[0]!.request).toMatchObject({ action: 'cancel', jobId });
    expect(cancelled).toHaveBeenCalledTimes(1);
  });
});

describe('job handle (Compute API properties, methods, events)', () => {
  it('has every documented property before exec', () => {
    const { compute } = setup();
    const job = compute.for([1], (x: number) => x);
    expect(job).toMatchObject({ requirements: {}, slicePaymentOffer: 0, requirePath: [], modulePath: [], collateResults: true, public: {}, computeGroups: [], readyState: 'new' });
    expect(job.status).toEqual({ runStatus: 'new', total: undefined, distributed: 0, computed: 0 });
    expect(job.scheduler).toBeInstanceOf(URL);
    expect(job.bank).toBeInstanceOf(URL);
    expect(job.meanSliceProfile).toBeUndefined();
    for (const name of ['paymentAccount', 'initialSliceProfile', 'contextId', 'id', 'receipt', 'results'] as const) expect(job[name]).toBeUndefined();
  });

  it('emits readystatechange exec, init, preauth, deploying, listeners, deployed', async () => {
    const { link, compute } = setup();
    const job = compute.for([1], (x: number) => x);
    const states: string[] = [];
    job.on('readystatechange', (state: string) => states.push(state));
    const running = job.exec();
    const sink = await link.nextAttach();
    sink.onEnd(jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }));
    link.stored = [{ sliceIndex: 0, value: 1 }];
    await running;
    expect(states).toEqual(['exec', 'init', 'preauth', 'deploying', 'listeners', 'deployed']);
    expect(job.readyState).toBe('deployed');
  });

  it('deploys a non-collating job without result events unless it has `result` listeners, and asks for them when one is added', async () => {
    const { link, compute } = setup();
    const quiet = compute.for([1, 2], (x: number) => x);
    quiet.collateResults = false;
    void quiet.exec().catch(() => undefined);
    await link.nextAttach();
    expect(link.deploys[0]!.resultEvents).toBe(false);
    expect(link.resultsWanted.get(jobId)).toBe(false);
    quiet.on('result', () => undefined);
    expect(link.resultsWanted.get(jobId)).toBe(true);

    const other = setup();
    const listening = other.compute.for([1, 2], (x: number) => x);
    listening.collateResults = false;
    listening.on('result', () => undefined);
    void listening.exec().catch(() => undefined);
    await other.link.nextAttach();
    expect(other.link.deploys[0]!.resultEvents).toBe(true);
    expect(other.link.resultsWanted.get(jobId)).toBe(true);
  });

  it('emits noProgress and noProgressData (with the slice input) for an ENOPROGRESS slice error', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a', 'b'], (x: string) => x);
    const noProgress: NoProgressEvent[] = [];
    const withData: NoProgressDataEvent[] = [];
    job.on('noProgress', (event: NoProgressEvent) => noProgress.push(event));
    job.on('noProgressData', (event: NoProgressDataEvent) => withData.push(event));
    void job.exec().catch(() => undefined);
    const sink = await link.nextAttach();
    const report = { timestamp: 5, progress: 0.5, value: '50%', throttledReports: 1 };
    sink.onSliceError(1, { code: 'ENOPROGRESS', name: 'Error', message: 'no progress', progress: { elapsedMs: 1600, last: report, lastUpdate: report } });
    sink.onSliceError(0, { code: 'EWORKFUNCTION', name: 'Error', message: 'other' });
    const expected = { address: jobId, sliceIndex: 1, timestamp: 1600, progressReports: { last: report, lastUpdate: report } };
    expect(noProgress).toEqual([expected]);
    expect(withData).toEqual([{ ...expected, data: 'b' }]);
  });

  it('takes the run status paused from the scheduler, and resume() asks for it to run again', async () => {
    const { link, compute } = setup();
    const job = compute.for([1], (x: number) => x);
    void job.exec().catch(() => undefined);
    const sink = await link.nextAttach();
    sink.onStatus(jobStatus(jobId, { runStatus: 'paused', total: 1, meanSliceProfile: { cpuHours: 1, gpuHours: 0, inputMBytes: 0, outputMBytes: 0 } }));
    expect(job.status.runStatus).toBe('paused');
    expect(job.meanSliceProfile).toEqual({ cpuHours: 1, gpuHours: 0, inputMBytes: 0, outputMBytes: 0 });
    link.actionReply = (request) => jobStatus(request.request.jobId, { runStatus: 'running', total: 1 });
    await job.resume();
    expect(link.actions.at(-1)!.request).toMatchObject({ action: 'resume', jobId });
    expect(job.status.runStatus).toBe('running');
  });

  it('resume() of a job that was never deployed rejects with EJOBSTATE', async () => {
    const { compute } = setup();
    await expect(compute.for([1], (x: number) => x).resume()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
  });

  it('setSlicePaymentOffer on a deployed job: EPERM for another offer (the scheduler cannot change it), nothing for the same one', async () => {
    const { link, compute } = setup();
    const job = compute.for([1], (x: number) => x);
    job.setSlicePaymentOffer({ offerPerSlice: '1.50' });
    expect(job.slicePaymentOffer).toEqual({ offerPerSlice: '1.50' });
    void job.exec().catch(() => undefined);
    await link.nextAttach();
    expect(link.deploys[0]!.job.slicePaymentOffer).toBe('1.5');
    expect(() => job.setSlicePaymentOffer(2)).toThrow(expect.objectContaining({ code: ErrorCode.EPERM, message: expect.stringMatching(/offers 1.5 DCC per slice/) }));
    await expect(job.exec(0)).rejects.toEqual(codeMatching(ErrorCode.EPERM));
    job.setSlicePaymentOffer(1.5);
    job.setSlicePaymentOffer('1.500');
    expect(job.slicePaymentOffer).toEqual({ offerPerSlice: '1.50' });
  });

  it('setSlicePaymentOffer on a compute.resume() handle is EPERM; exec(offer) of one must name the deployed offer', async () => {
    const { link, compute } = setup();
    link.restReply = () => infoOf({ slicePaymentOffer: '0.25', status: jobStatus(jobId, { runStatus: 'finished', total: 4, computed: 4 }) });
    expect(() => compute.resume(jobId).setSlicePaymentOffer(1)).toThrow(codeMatching(ErrorCode.EPERM));
    await expect(compute.resume(jobId).exec(1)).rejects.toEqual(codeMatching(ErrorCode.EPERM));
    expect(link.follows).toEqual([]);
    const job = compute.resume(jobId);
    link.stored = [0, 1, 2, 3].map((i) => ({ sliceIndex: i, value: i }));
    link.followReply = (id) => jobStatus(id, { runStatus: 'finished', total: 4, computed: 4 });
    await job.exec('0.25');
    expect(job.slicePaymentOffer).toBe('0.25');
  });

  it('refuses requirePath and modulePath entries that are not directories (strings), and incomplete computeGroups, with EINVAL and deploys nothing', async () => {
    const { link, compute } = setup();
    for (const change of [(job: Job) => job.requirePath.push(''), (job: Job) => job.modulePath.push(7 as never), (job: Job) => job.computeGroups.push({ joinKey: 'k' })]) {
      const job = compute.for([1], (x: number) => x);
      change(job);
      await expect(job.exec()).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
      await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    }
    expect(link.deploys).toEqual([]);
  });

  it('estimate() needs a sample when the input set is empty (EINVAL)', async () => {
    const { compute } = setup();
    await expect(compute.for([], (x: number) => x).estimate()).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });
});

describe('SchedulerConnection with two handles on one job', () => {
  it('delivers the job\'s events to both and unsubscribes only when the last one lets go', async () => {
    const socket = new FakeSocket();
    const connection = new SchedulerConnection(new URL('http://scheduler.test'), { socketFactory: () => socket.asClientSocket() });
    socket.answer = (name) => (name === 'subscribe' ? { ok: true, status: jobStatus(jobId) } : undefined);
    const heard: string[] = [];
    const sink = (name: string) => ({
      onStatus: () => heard.push(`${name}:status`),
      onResults: () => heard.push(`${name}:results`),
      onConsole: () => undefined,
      onCustom: () => undefined,
      onSliceError: () => undefined,
      onEnd: () => heard.push(`${name}:end`),
    });
    const first = sink('first');
    const second = sink('second');
    await connection.follow(jobId, first, false);
    await connection.follow(jobId, second, true);
    expect(socket.sent.filter((m) => m.name === 'subscribe').map((m) => m.payload)).toEqual([{ jobId, results: false }, { jobId }]);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    expect(heard).toEqual(['first:results', 'second:results']);
    connection.detach(jobId, first);
    expect(socket.sent.some((m) => m.name === 'unsubscribe')).toBe(false);
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished' }) });
    expect(heard.at(-1)).toBe('second:end');
    connection.detach(jobId, second);
    expect(socket.sent.filter((m) => m.name === 'unsubscribe')).toHaveLength(1);
  });
});
