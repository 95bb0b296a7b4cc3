import { inspect } from 'node:util';
import { jest } from '@jest/globals';
import { ErrorCode, Limits } from '@commune/protocol';
import { createCompute } from './compute.js';
import { contextFor, FakeLink } from './test-support.js';

/* eslint-disable no-var */
// Globals of the sandbox, declared so the work functions below type-check.
declare var progress: (n?: number | string) => boolean;
declare var work: { emit(name: string, value?: unknown): void };
/* eslint-enable no-var */

const codeMatching = (code: string) => expect.objectContaining({ code });

function setup() {
  const link = new FakeLink();
  return { link, compute: createCompute(contextFor(link)) };
}

describe('job.localExec', () => {
  it('spec example 1: compute.for(1, 3, ...) and its result handle', async () => {
    const { compute, link } = setup();
    const job = compute.for(1, 3, function (i: number) {
      progress('100%');
      return i * 10;
    });
    const results = await job.localExec();
    expect(inspect(results)).toBe('[ 10, 20, 30 ]');
    expect(inspect(results.entries())).toBe("[ [ '1', 10 ], [ '2', 20 ], [ '3', 30 ] ]");
    expect(results.fromEntries()).toEqual({ '1': 10, '2': 20, '3': 30 });
    expect(results.keys()).toEqual(['1', '2', '3']);
    expect(results.values()).toEqual([10, 20, 30]);
    expect(results.key(2)).toBe('3');
    expect(link.deploys).toHaveLength(0);
  });

  it('spec example 2: step overflow', async () => {
    const { compute } = setup();
    const results = await compute.for({ start: 10, end: 13, step: 2 }, (i: number) => progress(1) && i).localExec();
    expect(inspect(results)).toBe('[ 10, 12 ]');
  });

  it('spec example 3: group', async () => {
    const { compute } = setup();
    const results = await compute.for({ start: 10, end: 13, group: 2 }, (i: number[]) => progress(1) && i[1] - i[0]).localExec();
    expect(inspect(results)).toBe('[ 1, 1 ]');
  });

  it('spec example 6: an array, on two cores', async () => {
    const { compute } = setup();
    const job = compute.for([123, 456], function (i: number) {
      progress(1);
      return i;
    });
    expect(inspect(await job.localExec(2))).toBe('[ 123, 456 ]');
  });

  it('cores = false runs in one sandbox', async () => {
    const { compute } = setup();
    await expect(compute.do(3, (i: number) => progress(1) && i * 2).localExec(false)).resolves.toEqual([0, 2, 4]);
  });

  it('passes the arguments after the input, and emits the events exec() does', async () => {
    const { compute } = setup();
    const job = compute.do(
      2,
      function (i: number, add: number) {
        progress(1);
        console.log('slice', i);
        console.log('slice', i);
        console.log('slice', i);
        console.log('done');
        work.emit('seen', { i });
        return i + add;
      },
      [100],
    );
    const events: string[] = [];
    const lines: unknown[] = [];
    const custom: unknown[] = [];
    for (const name of ['accepted', 'result', 'resultsUpdated', 'complete']) job.on(name, () => events.push(name));
    job.on('console', (line: { message?: string; same?: number }) => lines.push(line.message ?? line.same));
    job.work.on('seen', (value: unknown) => custom.push(value));
    const results = await job.localExec();
    expect(results).toEqual([100, 101]);
    expect(events[0]).toBe('accepted');
    expect(events.filter((name) => name === 'result')).toHaveLength(2);
    expect(events.at(-1)).toBe('complete');
    expect(lines.filter((line) => line === 2)).toHaveLength(2); // two repeats folded, per slice
    expect(lines.filter((line) => typeof line === 'string').sort()).toEqual(['done', 'done', 'slice 0', 'slice 1']);
    expect(custom).toEqual(expect.arrayContaining([{ i: 0 }, { i: 1 }]));
    expect(job.id).toMatch(/^j_/);
    expect(job.status).toEqual({ runStatus: 'finished', total: 2, distributed: 2, computed: 2 });
  });

  it('retries a failing slice, then fails the job with its error code', async () => {
    const { compute } = setup();
    const job = compute.do(2, (i: number) => {
      progress(1);
      if (i === 1) throw new TypeError('bad slice');
      return i;
    });
    const sliceErrors: Array<{ sliceIndex: number; name: string; message: string }> = [];
    job.on('error', (error: { sliceIndex: number; name: string; message: string }) => sliceErrors.push(error));
    const failed = jest.fn();
    job.on(ErrorCode.EWORKFUNCTION, failed);
    await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.EWORKFUNCTION));
    expect(sliceErrors).toHaveLength(Limits.maxAttemptsPerSlice);
    expect(sliceErrors[0]).toMatchObject({ sliceIndex: 1, name: 'TypeError', message: 'bad slice' });
    expect(failed).toHaveBeenCalledTimes(1);
    expect(job.status.runStatus).toBe('failed');
  });

  it('slice errors nobody listens for do not crash the program', async () => {
    const { compute } = setup();
    const job = compute.do(1, () => {
      throw new Error('nobody hears this');
    });
    await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.EWORKFUNCTION));
  });

  it('cancel() stops a local run: it emits cancel and localExec rejects with ECANCELLED', async () => {
    const { compute } = setup();
    const job = compute.do(50, (i: number) => {
      const until = Date.now() + 20;
      while (Date.now() < until) progress();
      return i;
    });
    const cancelled = jest.fn();
    job.on('cancel', cancelled);
    job.once('result', () => void job.cancel());
    await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.ECANCELLED));
    expect(cancelled).toHaveBeenCalledTimes(1);
    expect(job.status.runStatus).toBe('cancelled');
  });

  it('refuses a bad cores value and a second run at the same time', async () => {
    const { compute } = setup();
    const job = compute.do(1, () => progress(1) && 1);
    await expect(job.localExec(0)).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(job.localExec(1.5)).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    const first = job.localExec();
    await expect(job.localExec()).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
    await expect(first).resolves.toEqual([1]);
  });
});
