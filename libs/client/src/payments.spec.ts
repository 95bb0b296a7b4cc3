import { inspect } from 'node:util';
import { jest } from '@jest/globals';
import { CommuneError, ErrorCode, recoverRequestSigner, SignedKind, type JobActionRequest, type JobStatus } from '@commune/protocol';
import { createCompute } from './compute.js';
import { SchedulerConnection } from './connection.js';
import type { Job } from './job.js';
import { contextFor, FakeLink, FakeSocket, jobStatus, testWallet, waitFor } from './test-support.js';

/**
 * Paid jobs in the SDK (spec "exec": ENOFUNDS, "resume", example 7 "Typical ENOFUNDS handler"):
 * the ENOFUNDS event and exec() rejection, exec() again resuming, job.escrow() and job.resume()
 * as signed actions, against a scripted scheduler.
 */

const codeMatching = (code: string) => expect.objectContaining({ code });
const jobId = 'j_0000000001';
const units = (dcc: string) => (BigInt(Math.round(Number(dcc) * 1e6)) * 10n ** 12n).toString();

function setup() {
  const link = new FakeLink();
  const compute = createCompute(contextFor(link));
  return { link, compute };
}

function pausedForFunds(fundsRequiredDcc: string | undefined, overrides: Partial<JobStatus> = {}): JobStatus {
  return jobStatus(jobId, {
    runStatus: 'paused',
    total: 2,
    failure: {
      code: 'ENOFUNDS',
      message: `the payment account lacks ${fundsRequiredDcc} DCC to escrow job ${jobId}`,
      ...(fundsRequiredDcc === undefined ? {} : { fundsRequired: units(fundsRequiredDcc) }),
    },
    ...overrides,
  });
}

const running = (overrides: Partial<JobStatus> = {}) => jobStatus(jobId, { runStatus: 'running', total: 2, ...overrides });
const finished = () => jobStatus(jobId, { runStatus: 'finished', total: 2, distributed: 2, computed: 2 });
const actionsOf = (link: FakeLink) => link.actions.map((action) => action.request.action);

/** Deploys a paid two-slice job and pauses it for ENOFUNDS the way the scheduler does (a job:status after the deploy). */
async function deployedAndPaused(fundsRequiredDcc = '1.5') {
  const { link, compute } = setup();
  const job = compute.for(['a', 'b'], (s: string) => s);
  const enofunds: Array<{ fundsRequired: unknown; error: unknown; this: unknown }> = [];
  job.on('ENOFUNDS', function (this: Job, fundsRequired: unknown, error: unknown) {
    enofunds.push({ fundsRequired, error, this: this });
  });
  const first = job.exec(0.5);
  const sink = await link.nextAttach();
  sink.onStatus(pausedForFunds(fundsRequiredDcc));
  return { link, compute, job, enofunds, first, sink };
}

/** A read token as the scheduler hands one out with a deploy. */
const readToken = 'ab'.repeat(32);

describe('ENOFUNDS', () => {
  it('rejects exec() with ENOFUNDS (details.fundsRequired in DCC), emits ENOFUNDS (fundsRequired, error) and lets go of the job', async () => {
    const { link, job, enofunds, first } = await deployedAndPaused('1.5');
    await expect(first).rejects.toEqual(
      expect.objectContaining({ code: ErrorCode.ENOFUNDS, message: expect.stringMatching(/lacks 1.5 DCC/), details: { fundsRequired: '1.5' } }),
    );
    await expect(first).rejects.toBeInstanceOf(CommuneError);
    expect(enofunds).toEqual([{ fundsRequired: '1.5', error: codeMatching(ErrorCode.ENOFUNDS), this: job }]);
    expect(link.deploys[0]!.job.slicePaymentOffer).toBe('0.5');
    expect(job.id).toBe(jobId);
    expect(job.status.runStatus).toBe('paused');
    // Nothing more to hear until the job is resumed: a program that gives up can exit.
    expect(link.detached).toEqual([jobId]);
  });

  it('emits ENOFUNDS once per pause, even when the status repeats', async () => {
    const { enofunds, first, sink } = await deployedAndPaused('1.5');
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
    sink.onStatus(pausedForFunds('1.5'));
    expect(enofunds).toHaveLength(1);
  });

  it('exec() again resumes the job with a signed resume action, follows it again and resolves with every result', async () => {
    const { link, job, first, sink } = await deployedAndPaused('1.5');
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
    link.actionReply = () => running();
    link.followReply = () => pausedForFunds('1.5');
    const again = job.exec();
    await waitFor('the resume action', () => link.actions.length === 1);
    const [{ request, signature }] = link.actions;
    expect(request).toMatchObject({ action: 'resume', jobId });
    expect(request.amount).toBeUndefined();
    expect(recoverRequestSigner(SignedKind.jobAction, request, signature)).toBe(testWallet.address);
    // It subscribed again before asking, so nothing of the resumed job is missed.
    expect(link.follows).toEqual([jobId]);
    expect(job.status.runStatus).toBe('running');
    expect(job.exec()).toBe(again);
    sink.onResults([{ sliceIndex: 0, value: 'A' }, { sliceIndex: 1, value: 'B' }]);
    sink.onEnd(finished());
    expect(inspect(await again)).toBe("[ 'A', 'B' ]");
  });

  it('exec() again while the account still lacks funds rejects with ENOFUNDS and what is missing now, without a second event', async () => {
    const { link, job, enofunds, first } = await deployedAndPaused('1.5');
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
    link.followReply = () => pausedForFunds('1.5');
    link.actionReply = () => {
      throw new CommuneError(ErrorCode.ENOFUNDS, 'the payment account lacks 0.75 DCC');
    };
    link.statusReply = () => pausedForFunds('0.75');
    await expect(job.exec()).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: '0.75' } }));
    expect(enofunds).toHaveLength(1);
    expect(job.status.runStatus).toBe('paused');
    expect(link.detached).toEqual([jobId, jobId]);

    // The third time the funds are there.
    link.actionReply = () => running();
    const third = job.exec();
    await waitFor('the second resume', () => link.actions.length === 2);
    link.sinks.get(jobId)!.onEnd(finished());
    link.stored = [{ sliceIndex: 0, value: 'x' }, { sliceIndex: 1, value: 'y' }];
    expect(inspect(await third)).toBe("[ 'x', 'y' ]");
  });

  it('exec() again of a job that was resumed elsewhere and finished meanwhile resolves without asking to resume', async () => {
    const { link, job, first } = await deployedAndPaused('1.5');
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
    link.followReply = () => finished();
    link.stored = [{ sliceIndex: 0, value: 'A' }, { sliceIndex: 1, value: 'B' }];
    expect(inspect(await job.exec())).toBe("[ 'A', 'B' ]");
    expect(link.actions).toEqual([]);
  });

  it('serves the spec\'s example 7: an ENOFUNDS listener that escrows fundsRequired and resumes; exec() again waits for it', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a', 'b'], (s: string) => s);
    // A successful escrow leaves the job paused without the ENOFUNDS failure, until it is resumed.
    const pausedFunded = jobStatus(jobId, { runStatus: 'paused', total: 2 });
    link.actionReply = (action: JobActionRequest) => (action.request.action === 'escrow' ? pausedFunded : running());
    link.followReply = () => pausedFunded;
    job.on('ENOFUNDS', async (fundsRequired: string) => {
      await job.escrow(fundsRequired);
      await job.resume();
    });
    const first = job.exec('0.5');
    const sink = await link.nextAttach();
    sink.onStatus(pausedForFunds('1.5'));
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
    const again = job.exec();
    await waitFor('the job to run again', () => job.status.runStatus === 'running');
    const escrow = link.actions[0]!;
    expect(escrow.request).toMatchObject({ action: 'escrow', jobId, amount: '1500000000000000000' });
    expect(recoverRequestSigner(SignedKind.jobAction, escrow.request, escrow.signature)).toBe(testWallet.address);
    // exec() let the listener's escrow and resume finish first: one resume, no race.
    expect(actionsOf(link)).toEqual(['escrow', 'resume']);
    sink.onResults([{ sliceIndex: 0, value: 1 }, { sliceIndex: 1, value: 2 }]);
    sink.onEnd(finished());
    expect([...(await again)]).toEqual([1, 2]);
  });

  it('pauses a running job later on (a re-escrow failed): the pending exec() rejects, resume() carries on', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a', 'b'], (s: string) => s);
    const first = job.exec(1);
    const sink = await link.nextAttach();
    sink.onStatus(running({ distributed: 1 }));
    sink.onResults([{ sliceIndex: 0, value: 'a' }]);
    sink.onStatus(pausedForFunds('3'));
    await expect(first).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: '3' } }));
    link.followReply = () => pausedForFunds('3');
    link.actionReply = () => running();
    await job.resume();
    expect(link.follows).toEqual([jobId]);
    expect(job.status.runStatus).toBe('running');
    const again = job.exec();
    expect(actionsOf(link)).toEqual(['resume']);
    sink.onResults([{ sliceIndex: 1, value: 'b' }]);
    sink.onEnd(finished());
    expect(inspect(await again)).toBe("[ 'a', 'b' ]");
  });

  it('gives undefined as fundsRequired when the scheduler does not say', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a', 'b'], (s: string) => s);
    const seen: unknown[] = [];
    job.on('ENOFUNDS', (fundsRequired: unknown) => seen.push(fundsRequired));
    const first = job.exec(1);
    (await link.nextAttach()).onStatus(pausedForFunds(undefined));
    await expect(first).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: undefined } }));
    expect(seen).toEqual([undefined]);
  });

  it('cancel() of a job waiting for funds settles it (ECANCELLED for exec() after it)', async () => {
    const { link, job, first } = await deployedAndPaused('1');
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
    const cancelled = jest.fn();
    job.on('cancel', cancelled);
    link.actionReply = () => jobStatus(jobId, { runStatus: 'cancelled', total: 2, failure: { code: 'ECANCELLED', message: 'cancelled by its owner' } });
    await job.cancel();
    expect(cancelled).toHaveBeenCalledTimes(1);
    await expect(job.exec()).rejects.toEqual(codeMatching(ErrorCode.ECANCELLED));
  });

  it('a compute.resume() handle of a job waiting for funds: exec() rejects ENOFUNDS, exec() again resumes it', async () => {
    const { link, compute } = setup();
    link.restReply = () => ({
      jobId,
      status: pausedForFunds('2'),
      work: '(s) => s',
      arguments: [],
      inputSet: { kind: 'array', values: ['a', 'b'] },
      requirements: {},
      public: {},
      slicePaymentOffer: '0.5',
      collateResults: true,
      receipt: '0x' + 'ab'.repeat(32),
    });
    link.followReply = () => pausedForFunds('2');
    const job = compute.resume(jobId);
    const seen: unknown[] = [];
    job.on('ENOFUNDS', (fundsRequired: unknown) => seen.push(fundsRequired));
    await expect(job.exec()).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: '2' } }));
    expect(seen).toEqual(['2']);
    link.actionReply = () => running();
    const again = job.exec();
    await waitFor('the resume', () => link.actions.length === 1);
    link.sinks.get(jobId)!.onResults([{ sliceIndex: 0, value: 'A' }, { sliceIndex: 1, value: 'B' }]);
    link.sinks.get(jobId)!.onEnd(finished());
    expect(inspect(await again)).toBe("[ 'A', 'B' ]");
  });
});

describe('job.escrow(amount)', () => {
  it('sends a signed escrow action with the amount in smallest units', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a'], (s: string) => s);
    void job.exec(1).catch(() => undefined);
    await link.nextAttach();
    link.actionReply = () => running();
    await job.escrow('2.000000000000000001');
    await job.escrow(0.25);
    await job.escrow(3n);
    expect(link.actions.map((action) => action.request)).toEqual([
      expect.objectContaining({ action: 'escrow', jobId, amount: '2000000000000000001' }),
      expect.objectContaining({ action: 'escrow', jobId, amount: '250000000000000000' }),
      expect.objectContaining({ action: 'escrow', jobId, amount: '3000000000000000000' }),
    ]);
    for (const { request, signature } of link.actions) expect(recoverRequestSigner(SignedKind.jobAction, request, signature)).toBe(testWallet.address);
  });

  it('refuses a zero, negative or over-precise amount (EINVAL) and a job that is not deployed (EJOBSTATE)', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a'], (s: string) => s);
    await expect(job.escrow(1)).rejects.toEqual(codeMatching(ErrorCode.EJOBSTATE));
    for (const amount of [0, -1, '1.0000000000000000001', 'much']) await expect(job.escrow(amount)).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    expect(link.actions).toEqual([]);
  });

  it('rejects ENOFUNDS with fundsRequired when the account cannot cover it; the scheduler paused the job, so ENOFUNDS is emitted too', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a', 'b'], (s: string) => s);
    const first = job.exec(1);
    await link.nextAttach();
    const seen: unknown[] = [];
    job.on('ENOFUNDS', (fundsRequired: unknown) => seen.push(fundsRequired));
    link.actionReply = () => {
      throw new CommuneError(ErrorCode.ENOFUNDS, 'lacks 4 DCC');
    };
    link.statusReply = () => pausedForFunds('4');
    await expect(job.escrow(10)).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: '4' } }));
    expect(seen).toEqual(['4']);
    await expect(first).rejects.toEqual(codeMatching(ErrorCode.ENOFUNDS));
  });

  it('takes fundsRequired from the refusal itself when the scheduler sends it', async () => {
    const { link, compute } = setup();
    const job = compute.for(['a', 'b'], (s: string) => s);
    void job.exec(1).catch(() => undefined);
    await link.nextAttach();
    link.actionReply = () => {
      throw new CommuneError(ErrorCode.ENOFUNDS, 'lacks 7 DCC', { fundsRequired: '7000000000000000000' });
    };
    link.statusReply = () => {
      throw new CommuneError(ErrorCode.ESCHEDULER, 'down');
    };
    await expect(job.escrow(10)).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: '7' } }));
  });
});

describe('ENOFUNDS through a SchedulerConnection', () => {
  it('closes the socket while the job waits for funds, and subscribes again when exec() resumes it', async () => {
    const sockets: FakeSocket[] = [];
    const connection = new SchedulerConnection(new URL('http://scheduler.test:4000'), {
      socketFactory: () => {
        const socket = new FakeSocket();
        socket.answer = (name, payload) => {
          if (name === 'deploy') {
            // The scheduler announces the pause right after the deploy: it beats the ack here.
            socket.receive('job:status', pausedForFunds('1.5'));
            return { ok: true, jobId, total: 2, receipt: 'r', readToken };
          }
          if (name === 'subscribe') return { ok: true, status: pausedForFunds('1.5') };
          if (name === 'job:action') {
            expect((payload as JobActionRequest).request.action).toBe('resume');
            return { ok: true, status: running() };
          }
          return undefined;
        };
        sockets.push(socket);
        return socket.asClientSocket();
      },
    });
    const compute = createCompute({ scheduler: connection.url, link: () => connection, signer: async () => testWallet });
    const job = compute.for(['a', 'b'], (s: string) => s);
    await expect(job.exec('0.5')).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, details: { fundsRequired: '1.5' } }));
    expect(sockets).toHaveLength(1);
    expect(sockets[0]!.sent.map((message) => message.name)).toEqual(['deploy', 'unsubscribe']);
    expect(sockets[0]!.disconnected).toBe(true);

    const again = job.exec();
    await waitFor('the job to run again', () => job.status.runStatus === 'running');
    const socket = sockets.at(-1)!;
    expect(socket.sent.map((message) => message.name)).toEqual(['subscribe', 'job:action']);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'A' }, { sliceIndex: 1, value: 'B' }] });
    socket.receive('job:end', { jobId, status: finished() });
    expect(inspect(await again)).toBe("[ 'A', 'B' ]");
    expect(socket.disconnected).toBe(true);
  });
});
