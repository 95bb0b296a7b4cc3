import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { init, type Job, type NoProgressDataEvent, type NoProgressEvent } from '@commune/client';
import { recoverRequestSigner, SignedKind, signRequest, type JobStatus } from '@commune/protocol';
import { isolatedEnvironment, waitFor } from '../support/services.js';
import { repoRoot, startOneSchedulerCommune, type OneSchedulerCommune } from '../support/processes.js';
import { connectClient, request } from '../support/sockets.js';

/**
 * Conformance of the Compute API's job, result-handle and static parts (spec "Static Methods",
 * "Result Handles", "Job Handles": properties, methods, events): one test per behaviour, run
 * through job.exec() on a live Commune (a scheduler, `commune-worker` processes) and, where the
 * behaviour applies to a local run, through job.localExec().
 */
describe('jobs, result handles and static methods (conformance, e2e)', () => {
  // Short progress limit and two attempts per slice so ENOPROGRESS shows within seconds.
  const limits = { progressTimeoutMs: 1500, maxAttemptsPerSlice: 2 };
  const env = isolatedEnvironment({ LOG_LEVEL: 'warn', PROGRESS_TIMEOUT_MS: String(limits.progressTimeoutMs), MAX_ATTEMPTS_PER_SLICE: String(limits.maxAttemptsPerSlice) });
  const home = mkdtempSync(join(tmpdir(), 'commune-conformance-jobs-'));
  let platform: OneSchedulerCommune;
  let scheduler: OneSchedulerCommune['scheduler'];
  let commune: Awaited<ReturnType<typeof init>>;
  let compute: Awaited<ReturnType<typeof init>>['compute'];

  beforeAll(async () => {
    platform = await startOneSchedulerCommune(env);
    scheduler = platform.scheduler;
    commune = await init({ scheduler: scheduler.url, home, localExec: limits });
    compute = commune.compute;
  }, 60_000);

  afterAll(async () => {
    await platform?.stop();
  }, 30_000);

  const tens = () => compute.for(0, 9, (i: number) => progress(1) && i * 10);
  /** A job long enough to act on while it runs: `n` slices of `ms` busy milliseconds each. */
  const slow = (n: number, ms: number) =>
    compute.for(0, n - 1, (i: number, busyMs: number) => {
      const until = Date.now() + busyMs;
      while (Date.now() < until) progress();
      return i * 3;
    }, [ms]);
  const expectEjobstate = (promise: Promise<unknown>) => expect(promise).rejects.toMatchObject({ code: 'EJOBSTATE' });

  /** A signed job action sent the way another tool would (the SDK does not expose pause). */
  async function act(action: 'pause' | 'resume', jobId: string) {
    const socket = await connectClient(scheduler.url);
    try {
      const signer = await commune.wallet.get();
      const body = { action, jobId, nonce: `n_${Math.random().toString(36).slice(2, 14)}`, expiresAt: Date.now() + 60_000 };
      return await request<{ ok: boolean; status?: JobStatus; code?: string }>(socket, 'job:action', { request: body, signature: await signRequest(signer, SignedKind.jobAction, body) });
    } finally {
      socket.disconnect();
    }
  }

  // ---------------------------------------------------------------- Result Handles

  describe('Result Handles', () => {
    it('results.list() gives the computed slices as a range object, optionally within a range (exec)', async () => {
      const job = tens();
      const results = await job.exec();
      expect(await results.list()).toEqual({ sparse: [{ start: 0, end: 9 }] });
      expect(await results.list({ start: 2, end: 5 })).toEqual({ sparse: [{ start: 2, end: 5 }] });
      expect(await results.list({ sparse: [{ start: 0, end: 9, step: 3 }] })).toEqual({ sparse: [{ start: 0, end: 9, step: 3 }] });
    }, 30_000);
    it('results.list() of a localExec() run: there is no scheduler holding its results (EJOBSTATE)', async () => {
      await expectEjobstate((await tens().localExec(2)).list());
    }, 30_000);

    it('results.delete() removes results from the scheduler; the handle keeps its copies (exec)', async () => {
      const job = tens();
      const results = await job.exec();
      expect(await results.delete({ start: 0, end: 4 })).toBe(5);
      expect(await results.list()).toEqual({ sparse: [{ start: 5, end: 9 }] });
      expect(Array.from(results)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
      expect(await results.delete()).toBe(5);
      expect(await results.list()).toEqual({ sparse: [] });
    }, 30_000);
    it('results.delete() of a localExec() run: EJOBSTATE', async () => {
      await expectEjobstate((await tens().localExec(2)).delete());
    }, 30_000);

    it('results.fetch(range, emitEvents) fills a non-collating handle; true emits for new slices, "all" for every one (exec)', async () => {
      const job = tens();
      job.collateResults = false;
      const results = await job.exec();
      expect(results.length).toBe(10);
      expect(Object.keys(results)).toEqual([]); // nothing in memory
      expect(() => results.lookupValue(3)).toThrow(expect.objectContaining({ code: 'ENOTFOUND' }));
      const events: number[] = [];
      job.on('result', (event: { sort: number }) => events.push(event.sort));
      await results.fetch({ start: 0, end: 3 }, true);
      expect(events).toEqual([0, 1, 2, 3]);
      expect(results.lookupValue(3)).toBe(30);
      await results.fetch({ sparse: [{ start: 2, end: 5 }] }, true);
      expect(events).toEqual([0, 1, 2, 3, 4, 5]);
      await results.fetch(undefined, 'all');
      expect(events.length).toBe(6 + 10);
      await results.fetch({ start: 9, end: 9 }); // no events by default
      expect(events.length).toBe(16);
      expect(Array.from(results)).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    }, 30_000);
    it('results.fetch() of a localExec() run: EJOBSTATE', async () => {
      await expectEjobstate((await tens().localExec(2)).fetch());
    }, 30_000);

    it('results.stat() describes each slice: distributedTime, computedTime, payment, with the API of an output set (exec)', async () => {
      const started = Date.now();
      const results = await tens().exec();
      const stats = await results.stat();
      expect(stats.length).toBe(10);
      for (let i = 0; i < 10; i++) {
        const entry = stats[i]!;
        expect(entry.distributedTime).toBeInstanceOf(Date);
        expect(entry.computedTime).toBeInstanceOf(Date);
        expect(entry.distributedTime!.getTime()).toBeLessThanOrEqual(entry.computedTime.getTime());
        expect(entry.distributedTime!.getTime()).toBeGreaterThanOrEqual(started - 1000);
        expect(entry.payment).toBe('0');
      }
      expect(stats.keys()).toEqual(results.keys());
      expect(stats.lookupValue(4)).toBe(stats[4]);
      const some = await results.stat({ start: 8, end: 9 });
      expect(Object.keys(some)).toEqual(['8', '9']);
    }, 30_000);
    it('results.stat() of a localExec() run: EJOBSTATE', async () => {
      await expectEjobstate((await tens().localExec(2)).stat());
    }, 30_000);

    it('collateResults false keeps the client flat while a 1,000,000-slice job runs (exec)', async () => {
      const job = compute.for(0, 999_999, (i: number) => progress(1) && i);
      job.collateResults = false;
      const samples: number[] = [];
      const baseline = process.memoryUsage().heapUsed;
      const sampler = setInterval(() => samples.push(process.memoryUsage().heapUsed), 100);
      let resultEvents = 0;
      job.on('result', () => resultEvents++);
      job.removeAllListeners('result'); // a listener that came and went: results must not be pushed
      try {
        const results = await job.exec();
        expect(results.length).toBe(1_000_000);
        expect(Object.keys(results).length).toBe(0);
      } finally {
        clearInterval(sampler);
      }
      expect(job.status).toMatchObject({ runStatus: 'finished', total: 1_000_000, computed: 1_000_000 });
      expect(resultEvents).toBe(0);
      const growthMb = (Math.max(...samples) - baseline) / 1e6;
      expect(growthMb).toBeLessThan(150);
      expect(await job.results!.list()).toEqual({ sparse: [{ start: 0, end: 999_999 }] });
    }, 300_000);
    it('collateResults false keeps the client flat while a 1,000,000-slice job runs (localExec)', async () => {
      const job = compute.for(0, 999_999, (i: number) => progress(1) && i);
      job.collateResults = false;
      const samples: number[] = [];
      const baseline = process.memoryUsage().heapUsed;
      const sampler = setInterval(() => samples.push(process.memoryUsage().heapUsed), 100);
      try {
        const results = await job.localExec(2);
        expect(Object.keys(results).length).toBe(0);
      } finally {
        clearInterval(sampler);
      }
      expect(job.status).toMatchObject({ runStatus: 'finished', computed: 1_000_000 });
      expect((Math.max(...samples, baseline) - baseline) / 1e6).toBeLessThan(150);
    }, 300_000);
  });

  // ---------------------------------------------------------------- Static Methods

  describe('Static Methods', () => {
    it('compute.cancel(jobId) cancels a running job; its exec() rejects with ECANCELLED (exec)', async () => {
      const job = compute.for(0, 1e9, (i: number) => progress(1) && i);
      const execution = job.exec();
      await new Promise<void>((resolve) => job.once('result', () => resolve()));
      await compute.cancel(job.id!);
      await expect(execution).rejects.toMatchObject({ code: 'ECANCELLED' });
      expect((await compute.status(job.id!)).runStatus).toBe('cancelled');
    }, 30_000);

    it('compute.resume(jobId).exec() resolves with ALL results, those computed before included (exec)', async () => {
      const job = slow(400, 5);
      const first = job.exec();
      await waitFor('a few results', () => job.status.computed >= 20, 20_000);
      const resumed = compute.resume(job.id!);
      const seen = new Set<number>();
      resumed.on('result', (event: { sort: number }) => seen.add(event.sort));
      const results = await resumed.exec();
      expect(Array.from(results)).toEqual(Array.from({ length: 400 }, (_, i) => i * 3));
      expect(seen.size).toBe(400);
      expect(resumed.receipt).toBe(job.receipt);
      expect(resumed.workSource).toBe(job.workSource);
      await first;
    }, 60_000);
    it('compute.resume(jobId) then localExec(): a resumed job runs on its scheduler (EJOBSTATE)', async () => {
      const job = tens();
      await job.exec();
      await expectEjobstate(compute.resume(job.id!).localExec());
    }, 30_000);

    it('a job resumed from a second process after the first one exits receives every result (exec)', async () => {
      const script = join(home, 'deploy-and-exit.mjs');
      writeFileSync(
        script,
        `const { init } = await import(${JSON.stringify(pathToFileURL(join(repoRoot, 'libs/client/dist/index.js')).href)});
const { compute } = await init({ scheduler: process.argv[2], home: process.argv[3] });
const job = compute.for(0, 299, (i, busyMs) => { const until = Date.now() + busyMs; while (Date.now() < until) progress(); return i * i; }, [20]);
job.on('accepted', () => process.stdout.write(JSON.stringify({ jobId: job.id }) + '\\n', () => process.exit(0)));
job.exec().catch((error) => { console.error(error); process.exit(1); });
`,
      );
      const child = spawn(process.execPath, [script, scheduler.url, home], { stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect({ code, output }).toMatchObject({ code: 0 });
      const { jobId } = JSON.parse(output.trim().split('\n').at(-1)!) as { jobId: string };
      const status = await compute.status(jobId);
      expect(status.runStatus).toBe('running'); // the first process is gone, the job is not
      const results = await compute.resume(jobId).exec();
      expect(results.length).toBe(300);
      for (let i = 0; i < 300; i++) if (results[i] !== i * i) throw new Error(`slice ${i}: ${String(results[i])}`);
    }, 60_000);

    it('compute.status(job | jobId) gives a job status object (exec)', async () => {
      const job = tens();
      await job.exec();
      for (const status of [await compute.status(job), await compute.status(job.id!)]) {
        expect(status).toMatchObject({ jobId: job.id, runStatus: 'finished', total: 10, distributed: 10, computed: 10 });
      }
    }, 30_000);
    it('compute.status(paymentAccount, startTime, endTime) lists the account\'s jobs in that window (exec)', async () => {
      const start = new Date();
      const job = tens();
      await job.exec();
      const account = await commune.wallet.get();
      const listed = await compute.status(account, start, Date.now() + 1000);
      expect(listed.map((status) => status.jobId)).toContain(job.id);
      const byAddress = await compute.status(await commune.wallet.getAddress(), start.getTime());
      expect(byAddress.map((status) => status.jobId)).toContain(job.id);
      expect(await compute.status(account, 0, start.getTime() - 60_000)).not.toEqual(expect.arrayContaining([expect.objectContaining({ jobId: job.id })]));
    }, 30_000);

    it('compute.getJobInfo(jobId) tells what was deployed and its status (exec)', async () => {
      const job = compute.for([1, 2, 3], (x: number, k: number) => progress(1) && x * k, [7]);
      job.public.name = 'info';
      await job.exec();
      const info = await compute.getJobInfo(job.id!);
      expect(info).toMatchObject({
        jobId: job.id,
        work: job.workSource,
        arguments: [7],
        inputSet: { kind: 'array', values: [1, 2, 3] },
        public: { name: 'info' },
        collateResults: true,
        receipt: job.receipt,
        status: { runStatus: 'finished', computed: 3 },
      });
    }, 30_000);

    it('compute.getSliceInfo(jobId) gives each slice\'s status and history: attempts, failures, times (exec)', async () => {
      const job = compute.for(['ok', 'bad'], (x: string) => {
        progress(1);
        if (x === 'bad') throw new Error('bad input');
        return x;
      });
      await expect(job.exec()).rejects.toMatchObject({ code: 'EWORKFUNCTION' });
      const info = await compute.getSliceInfo(job.id!);
      expect(info.status).toMatchObject({ runStatus: 'failed' });
      const bad = info.slices.find((slice) => slice.sliceIndex === 1)!;
      expect(bad).toMatchObject({ status: 'failed', attempts: limits.maxAttemptsPerSlice, computedTime: null });
      expect(bad.failures).toEqual(Array(limits.maxAttemptsPerSlice).fill(expect.objectContaining({ code: 'EWORKFUNCTION', message: 'bad input' })));
      expect(bad.distributedTime).not.toBeNull();
      for (const slice of info.slices.filter((s) => s.status === 'computed')) expect(slice).toMatchObject({ sliceIndex: 0, attempts: 1, failures: [] });
    }, 30_000);

    it('compute.marketRate, as a property and as marketRate(factor), is the NYI rate 0.0001465376 DCC times factor; a paid job needs the bank (exec)', async () => {
      expect(compute.marketRate.offerPerSlice).toBe(0.0001465376);
      expect(compute.marketRate(3).offerPerSlice).toBe(0.0004396128);
      await expect(tens().exec(compute.marketRate)).rejects.toMatchObject({ code: 'ENOBANK' });
      await expect(tens().exec(compute.marketRate(2))).rejects.toMatchObject({ code: 'ENOBANK' });
    });

    it('compute.getMarketValue() resolves with a WorkValueQuote signed by the scheduler, firm until quoteExpiry', async () => {
      const quote = await compute.getMarketValue();
      const { signature, ...signed } = quote;
      expect(recoverRequestSigner(SignedKind.marketQuote, signed, signature)).toBe(quote.signer);
      expect(quote).toMatchObject({ CPUHour: '0.52753536', GPUHour: '0.52753536', InputMByte: '0.0001465376', OutputMByte: '0.0001465376', currency: 'DCC' });
      expect(quote.quoteExpiry).toBeGreaterThan(Date.now());
    });

    it('compute.calculateSlicePayment(sliceProfile, workValue) prices a slice at the quoted rates', async () => {
      const quote = await compute.getMarketValue();
      expect(compute.calculateSlicePayment({ cpuHours: 1, gpuHours: 0, inputMBytes: 0, outputMBytes: 0 }, quote)).toBe(0.52753536);
      // 0.5·0.52753536 + 0.25·0.52753536 + 1·0.0001465376 + 2·0.0001465376, computed exactly
      expect(compute.calculateSlicePayment({ cpuHours: 0.5, gpuHours: 0.25, inputMBytes: 1, outputMBytes: 2 }, quote)).toBe(0.3960911328);
      const profile = await tens().estimate();
      expect(compute.calculateSlicePayment(profile, quote)).toBeGreaterThan(0);
    }, 30_000);

    it('compute.marketValue(ratio, max) is a SlicePaymentDescriptor {offerPerSlice}; paying it needs the bank (exec)', async () => {
      expect(compute.marketValue.offerPerSlice).toBe(0.0001465376);
      expect(compute.marketValue(2).offerPerSlice).toBe(0.0002930752);
      expect(compute.marketValue(10, 0.001)).toMatchObject({ offerPerSlice: 0.001, ratio: 10, max: 0.001 });
      await expect(tens().exec(compute.marketValue(1, 1))).rejects.toMatchObject({ code: 'ENOBANK' });
      await expect(tens().exec({ offerPerSlice: 0 })).resolves.toHaveLength(10);
    }, 30_000);
  });

  // ---------------------------------------------------------------- Job Handles

  describe('Job Handles', () => {
    function expectProperties(job: Job) {
      expect(job.requirements).toEqual({});
      expect(job.initialSliceProfile).toBeUndefined();
      expect(job.slicePaymentOffer).toBe(0);
      expect(job.paymentAccount).toBeUndefined();
      expect(typeof job.work.on).toBe('function');
      expect(job.requirePath).toEqual([]);
      expect(job.modulePath).toEqual([]);
      expect(job.collateResults).toBe(true);
      expect(job.status).toEqual({ runStatus: 'new', total: undefined, distributed: 0, computed: 0 });
      expect(job.public).toEqual({});
      expect(job.contextId).toBeUndefined();
      expect(job.scheduler).toBeInstanceOf(URL);
      expect(job.scheduler.href).toBe(new URL(scheduler.url).href);
      expect(job.bank).toBeInstanceOf(URL);
      expect(job.computeGroups).toEqual([]);
      expect(job.id).toBeUndefined();
      expect(job.meanSliceProfile).toBeUndefined();
      expect(job.results).toBeUndefined();
    }
    for (const mode of ['exec', 'localExec'] as const) {
      it(`has every documented property, and once run id, receipt, meanSliceProfile, results (${mode})`, async () => {
        const job = compute.for(0, 9, (i: number) => progress(1) && 'x'.repeat(i));
        expectProperties(job);
        const results = mode === 'exec' ? await job.exec() : await job.localExec(2);
        expect(job.id).toMatch(/^j_/);
        if (mode === 'exec') expect(job.receipt).toMatch(/^0x[0-9a-f]{64}$/);
        expect(job.results).toBe(results);
        expect(job.status).toEqual({ runStatus: 'finished', total: 10, distributed: 10, computed: 10 });
        expect(job.meanSliceProfile).toEqual({ cpuHours: expect.any(Number), gpuHours: 0, inputMBytes: 1 / 1e6, outputMBytes: 6.5 / 1e6 });
        expect(job.meanSliceProfile!.cpuHours).toBeGreaterThanOrEqual(0);
      }, 30_000);
    }

    it('job.resume() resumes a paused job, which then completes with every result (exec)', async () => {
      const job = slow(200, 10);
      const statuses: string[] = [];
      job.on('status', (event: { runStatus: string }) => statuses.push(event.runStatus));
      const execution = job.exec();
      await waitFor('the job to be deployed', () => job.id !== undefined, 10_000);
      expect(await act('pause', job.id!)).toMatchObject({ ok: true, status: { runStatus: 'paused' } });
      await waitFor('the paused status on the job handle', () => job.status.runStatus === 'paused', 10_000);
      expect((await compute.status(job.id!)).runStatus).toBe('paused');
      await job.resume();
      expect(job.status.runStatus).toBe('running');
      const results = await execution;
      expect(Array.from(results)).toEqual(Array.from({ length: 200 }, (_, i) => i * 3));
      expect(statuses).toContain('paused');
    }, 60_000);
    it('job.resume() of a localExec() run: it is never paused (EJOBSTATE)', async () => {
      const job = tens();
      await job.localExec(2);
      await expectEjobstate(job.resume());
    }, 30_000);

    it('job.estimate(sample?) runs one slice locally and resolves with its SliceProfile', async () => {
      const job = compute.for(['ab', 'abcd'], (s: string) => {
        progress(1);
        return s + s;
      });
      expect(await job.estimate()).toEqual({ cpuHours: expect.any(Number), gpuHours: 0, inputMBytes: 4 / 1e6, outputMBytes: 6 / 1e6 });
      expect(await job.estimate('abcdefgh')).toMatchObject({ inputMBytes: 10 / 1e6, outputMBytes: 18 / 1e6 });
      const failing = compute.for([1], () => {
        throw new Error('nope');
      });
      await expect(failing.estimate()).rejects.toMatchObject({ code: 'EWORKFUNCTION' });
    }, 30_000);

    it('setSlicePaymentOffer and setPaymentAccountKeystore: EPERM after deploy for the account and for a changed offer (exec)', async () => {
      const job = tens();
      job.setSlicePaymentOffer({ offerPerSlice: 0 });
      expect(job.slicePaymentOffer).toEqual({ offerPerSlice: 0 });
      const account = await commune.wallet.get();
      job.setPaymentAccountKeystore(account);
      await job.exec();
      expect(() => job.setPaymentAccountKeystore(account)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      expect(() => job.setSlicePaymentOffer(5)).toThrow(expect.objectContaining({ code: 'EPERM' }));
      job.setSlicePaymentOffer(0); // the same offer changes nothing
    }, 30_000);
    it('setSlicePaymentOffer before localExec(): the offer is kept, a local run pays nothing (localExec)', async () => {
      const job = tens();
      job.setSlicePaymentOffer(0);
      await expect(job.localExec(2)).resolves.toHaveLength(10);
    }, 30_000);

    it('emits readystatechange with each deployment state (exec, and exec of a resumed job)', async () => {
      const job = tens();
      const states: string[] = [];
      job.on('readystatechange', (state: string) => states.push(state));
      await job.exec();
      expect(states).toEqual(['exec', 'init', 'preauth', 'deploying', 'listeners', 'deployed']);
      const resumed = compute.resume(job.id!);
      const resumedStates: string[] = [];
      resumed.on('readystatechange', (state: string) => resumedStates.push(state));
      await resumed.exec();
      expect(resumedStates).toEqual(['exec', 'init', 'preauth', 'listeners', 'deployed']);
    }, 30_000);
    it('emits readystatechange with each deployment state (localExec)', async () => {
      const job = tens();
      const states: string[] = [];
      job.on('readystatechange', (state: string) => states.push(state));
      await job.localExec(2);
      expect(states).toEqual(['exec', 'init', 'deployed']);
    }, 30_000);

    for (const mode of ['exec', 'localExec'] as const) {
      it(`emits noProgress and noProgressData with the last progress reports of a stopped slice (${mode})`, async () => {
        const job = compute.for([41], function () {
          progress(0.5);
          for (;;) {
            /* never reports progress again */
          }
        });
        const noProgress: NoProgressEvent[] = [];
        const noProgressData: NoProgressDataEvent[] = [];
        job.on('noProgress', (event: NoProgressEvent) => noProgress.push(event));
        job.on('noProgressData', (event: NoProgressDataEvent) => noProgressData.push(event));
        const run = mode === 'exec' ? job.exec() : job.localExec(1);
        await expect(run).rejects.toMatchObject({ code: 'ENOPROGRESS' });
        expect(noProgress).toHaveLength(limits.maxAttemptsPerSlice);
        const [event] = noProgress;
        expect(event).toMatchObject({ address: job.id, sliceIndex: 0 });
        expect(event!.timestamp).toBeGreaterThanOrEqual(limits.progressTimeoutMs);
        const expectedReport = { progress: 0.5, value: 0.5, throttledReports: 0, timestamp: expect.any(Number) };
        expect(event!.progressReports).toEqual({ last: expectedReport, lastUpdate: expectedReport });
        expect(noProgressData[0]).toEqual({ ...event, data: 41 });
      }, 60_000);
    }

    for (const mode of ['exec', 'localExec'] as const) {
      it(`folds repeated console messages into a {same} event (${mode})`, async () => {
        const job = compute.for([1], () => {
          console.log('again');
          console.log('again');
          console.log('again');
          console.warn('different');
          progress(1);
          return 1;
        });
        const events: unknown[] = [];
        job.on('console', (event: unknown) => events.push(event));
        if (mode === 'exec') await job.exec();
        else await job.localExec(1);
        await waitFor('three console events', () => events.length >= 3, 5_000);
        expect(events).toEqual([
          { address: job.id, sliceIndex: 0, level: 'log', message: 'again' },
          { same: 2 },
          { address: job.id, sliceIndex: 0, level: 'warn', message: 'different' },
        ]);
      }, 30_000);
    }

    for (const mode of ['exec', 'localExec'] as const) {
      it(`calls listeners with this bound to the job, unless bound otherwise (${mode})`, async () => {
        const job = compute.for([1], (x: number) => {
          progress(1);
          work.emit('custom', x);
          return x;
        });
        const bound: unknown[] = [];
        const other = {};
        job.on('complete', function (this: unknown) {
          bound.push(this);
        });
        job.addEventListener('result', function (this: unknown) {
          bound.push(this);
        });
        job.work.on('custom', function (this: unknown) {
          bound.push(this);
        });
        job.on(
          'complete',
          function (this: unknown) {
            bound.push(this);
          }.bind(other),
        );
        const done = mode === 'exec' ? job.exec() : job.localExec(1);
        await done;
        await waitFor('the custom event', () => bound.length >= 4, 5_000);
        expect(bound.filter((value) => value === job)).toHaveLength(3);
        expect(bound).toContain(other);
      }, 30_000);
    }

    it('refuses requirePath, modulePath and computeGroups it cannot honour (exec and localExec)', async () => {
      // requirePath / modulePath are directories searched for packages (test/conformance/modules.e2e-spec.ts); an empty name is none.
      const job = tens();
      job.requirePath.push('');
      await expect(job.exec()).rejects.toMatchObject({ code: 'EINVAL' });
      await expect(job.localExec()).rejects.toMatchObject({ code: 'EINVAL' });
      // Compute groups are honoured (test/conformance/compute-groups.e2e-spec.ts): an incomplete credential is EINVAL.
      const grouped = tens();
      grouped.computeGroups.push({ joinKey: 'k' });
      await expect(grouped.exec()).rejects.toMatchObject({ code: 'EINVAL' });
    });
  });
});

declare function progress(value?: number | string): boolean;
declare const work: { emit(name: string, value: unknown): void };
