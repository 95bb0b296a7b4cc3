import { inspect } from 'node:util';
import { jest } from '@jest/globals';
import { ErrorCode, Limits, recoverRequestSigner, SignedKind, type DeployRequest } from '@commune/protocol';
import { createCompute } from './compute.js';
import { SchedulerConnection } from './connection.js';
import { FakeSocket, jobStatus, testWallet, waitFor } from './test-support.js';

const codeMatching = (code: string) => expect.objectContaining({ code });
const jobId = 'j_0000000042';
const schedulerUrl = new URL('http://scheduler.test:4000');

function setup() {
  const socket = new FakeSocket();
  const urls: string[] = [];
  const connection = new SchedulerConnection(schedulerUrl, {
    socketFactory: (url) => {
      urls.push(url);
      return socket.asClientSocket();
    },
  });
  const compute = createCompute({ scheduler: schedulerUrl, link: () => connection, signer: async () => testWallet });
  return { socket, connection, compute, urls };
}

function deployed(socket: FakeSocket): DeployRequest {
  const sent = socket.sent.find((message) => message.name === 'deploy');
  if (!sent) throw new Error('nothing was deployed');
  return sent.payload as DeployRequest;
}

/** A read token as the scheduler hands one out with a deploy. */
const readToken = 'ab'.repeat(32);

describe(SchedulerConnection.name, () => {
  let warnings: jest.SpiedFunction<typeof process.emitWarning>;
  const realFetch = globalThis.fetch;

  beforeEach(() => {
    warnings = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
  });

  afterEach(() => {
    warnings.mockRestore();
    globalThis.fetch = realFetch;
  });

  it('opens the /client namespace of the scheduler on the first deploy, not before', async () => {
    const { compute, urls, socket } = setup();
    compute.for([1], (i: number) => i);
    expect(urls).toEqual([]);
    socket.answer = () => ({ ok: false, code: 'EINVAL', message: 'no' });
    await compute
      .for([1], (i: number) => i)
      .exec()
      .catch(() => undefined);
    expect(urls).toEqual(['http://scheduler.test:4000/client']);
  });

  it('holds events that beat the deploy ack and delivers them, in order, after it', async () => {
    const { socket, compute } = setup();
    socket.answer = (name) => {
      if (name !== 'deploy') return undefined;
      // The scheduler joined us to the room before acking: these arrive first.
      socket.receive('job:status', jobStatus(jobId, { total: 2, distributed: 2, computed: 1 }));
      socket.receive('job:results', { jobId, results: [{ sliceIndex: 1, value: 'b' }] });
      return { ok: true, jobId, total: 2, receipt: 'receipt', readToken };
    };
    const job = compute.for(['x', 'y'], (s: string) => s);
    const events: string[] = [];
    for (const name of ['accepted', 'status', 'result']) job.on(name, () => events.push(name));
    const running = job.exec();
    await waitFor('the deploy to be acknowledged', () => job.id === jobId);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'a' }] });
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 2, distributed: 2, computed: 2 }) });
    expect(inspect(await running)).toBe("[ 'a', 'b' ]");
    expect(events).toEqual(['accepted', 'status', 'result', 'result', 'status']);
    expect(deployed(socket).job.owner).toBe(testWallet.address);
  });

  it('closes the socket when no job needs it, so the program can exit', async () => {
    const { socket, compute } = setup();
    socket.answer = () => ({ ok: true, jobId, total: 1, receipt: 'r', readToken });
    const running = compute.for([1], (i: number) => i).exec();
    await waitFor('the deploy', () => socket.sent.length > 0);
    await new Promise((resolve) => setImmediate(resolve));
    expect(socket.disconnected).toBe(false);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }) });
    await running;
    // state:get: job.state becomes the scheduler's final state when the job ends (spec "Shared State").
    expect(socket.sent.map((message) => message.name)).toEqual(['deploy', 'state:get', 'unsubscribe']);
    expect(socket.disconnected).toBe(true);
  });

  it('re-subscribes to jobs in flight after a reconnect and settles a job that ended meanwhile', async () => {
    const { socket, compute } = setup();
    socket.answer = (name) => {
      if (name === 'deploy') return { ok: true, jobId, total: 2, receipt: 'r', readToken };
      if (name === 'subscribe') return { ok: true, status: jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }) };
      return undefined;
    };
    const requested: string[] = [];
    globalThis.fetch = jest.fn(async (url: string | URL | Request) => {
      requested.push(String(url));
      return new Response(JSON.stringify({ jobId, results: [{ sliceIndex: 1, value: 'late' }], nextAfter: null }), { status: 200 });
    }) as typeof fetch;
    const job = compute.for([1, 2], (i: number) => i);
    const running = job.exec();
    await waitFor('the deploy to be acknowledged', () => job.id === jobId);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'early' }] });
    // The connection dropped; job:end went out while we were away.
    socket.receive('connect');
    expect(inspect(await running)).toBe("[ 'early', 'late' ]");
    expect(socket.sent.find((message) => message.name === 'subscribe')?.payload).toEqual({ jobId, readToken });
    expect(requested).toEqual([`http://scheduler.test:4000/jobs/${jobId}/results?after=0&limit=1000`]);
  });

  it('follows the state of a job with a change listener again after a reconnect, and takes the state it missed', async () => {
    const { socket, compute } = setup();
    let version = 1;
    socket.answer = (name) => {
      if (name === 'deploy') return { ok: true, jobId, total: 1, receipt: 'r', readToken };
      if (name === 'subscribe') return { ok: true, status: jobStatus(jobId, { total: 1 }) };
      if (name === 'state:subscribe' || name === 'state:get') return { ok: true, version, state: JSON.stringify({ best: version }) };
      return undefined;
    };
    const job = compute.for([1], (i: number) => i);
    const changes: unknown[] = [];
    job.on('change', () => changes.push({ ...job.state }));
    const running = job.exec();
    await waitFor('the first state:subscribe', () => socket.sent.filter((message) => message.name === 'state:subscribe').length === 1);
    version = 7; // changed while the connection was down: no state:change reached us
    socket.receive('connect');
    await waitFor('the state taken again after the reconnect', () => (job.state as { best?: number }).best === 7);
    expect(socket.sent.filter((message) => message.name === 'state:subscribe').map((message) => message.payload)).toEqual([{ jobId, readToken }, { jobId, readToken }]);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }) });
    await running;
    expect(changes).toContainEqual({ best: 7 });
  });

  it('settles a job from its REST status when a re-subscribe is refused', async () => {
    const { socket, compute } = setup();
    socket.answer = (name) => {
      if (name === 'deploy') return { ok: true, jobId, total: 1, receipt: 'r', readToken };
      return { ok: false, code: 'ENOTFOUND', message: 'not live here' };
    };
    globalThis.fetch = jest.fn(async () =>
      new Response(JSON.stringify(jobStatus(jobId, { runStatus: 'failed', total: 1, failure: { code: 'ETOOMANYERRORS', message: 'too many' } })), { status: 200 }),
    ) as typeof fetch;
    const job = compute.for([1], (i: number) => i);
    const running = job.exec();
    await waitFor('the deploy to be acknowledged', () => job.id === jobId);
    socket.receive('connect');
    await expect(running).rejects.toEqual(codeMatching(ErrorCode.ETOOMANYERRORS));
  });

  it('refuses a deploy larger than one message (ETOOBIG) before sending anything', async () => {
    const { socket, connection } = setup();
    const big = { job: { work: 'x'.repeat(Limits.maxMessageBytes) }, signature: '0x00' } as unknown as DeployRequest;
    await expect(connection.deploy(big)).rejects.toEqual(codeMatching(ErrorCode.ETOOBIG));
    expect(socket.sent).toEqual([]);
  });

  it('sends large deploys one at a time, and again while the scheduler is too busy for them (EUNAVAILABLE)', async () => {
    const { socket, connection } = setup();
    const large = (n: number) => ({ job: { work: `(x) => ${n}`, inputSet: { kind: 'array', values: ['x'.repeat(Limits.largeMessageBytes)] } }, signature: '0x00' }) as unknown as DeployRequest;
    let answerFirst!: (reply: unknown) => void;
    let busy = 1;
    socket.answer = (_name, payload) => {
      const work = (payload as DeployRequest).job.work;
      if (work === '(x) => 1') return new Promise((resolve) => (answerFirst = resolve));
      if (busy-- > 0) return { ok: false, code: 'EUNAVAILABLE', message: 'busy' };
      return { ok: true, jobId: 'j_0000000002', total: 1, receipt: 'r', readToken };
    };
    const first = connection.deploy(large(1));
    const second = connection.deploy(large(2));
    await waitFor('the first deploy', () => socket.sent.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(socket.sent).toHaveLength(1); // the second waits for the first's answer
    answerFirst({ ok: true, jobId, total: 1, receipt: 'r', readToken });
    await expect(first).resolves.toMatchObject({ jobId });
    await expect(second).resolves.toMatchObject({ jobId: 'j_0000000002' });
    expect(socket.sent.map((message) => (message.payload as DeployRequest).job.work)).toEqual(['(x) => 1', '(x) => 2', '(x) => 2']);
  });

  it('reads a job it deployed with its read token: REST header, subscribe after a reconnect, state reads', async () => {
    const { socket, compute } = setup();
    socket.answer = (name) => {
      if (name === 'deploy') return { ok: true, jobId, total: 1, receipt: 'r', readToken };
      if (name === 'subscribe') return { ok: true, status: jobStatus(jobId) };
      return { ok: true, version: 0, state: '{}' };
    };
    const headers: Array<Record<string, string>> = [];
    globalThis.fetch = jest.fn(async (url: string | URL | Request, init?: RequestInit) => {
      headers.push({ ...(init?.headers as Record<string, string>) });
      const body = String(url).includes('/results') ? { jobId, results: [], nextAfter: null } : jobStatus(jobId);
      return new Response(JSON.stringify(body), { status: 200 });
    }) as typeof fetch;
    const job = compute.for([1], (i: number) => i);
    const running = job.exec();
    await waitFor('the deploy to be acknowledged', () => job.id === jobId);
    expect(job.readToken).toBe(readToken);
    socket.receive('connect');
    await waitFor('the re-subscribe', () => socket.sent.some((message) => message.name === 'subscribe'));
    expect(socket.sent.find((message) => message.name === 'subscribe')?.payload).toEqual({ jobId, readToken });
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }) });
    await running;
    expect(socket.sent.find((message) => message.name === 'state:get')?.payload).toEqual({ jobId, readToken });
    await compute.status(jobId);
    expect(headers.at(-1)).toMatchObject({ 'x-commune-read-token': readToken });
  });

  it('follows a job it has no token for with the owner\'s signed read grant, and reads with the token it is given', async () => {
    const { socket, connection } = setup();
    const granted = 'cd'.repeat(32);
    socket.answer = (name) => (name === 'subscribe' ? { ok: true, status: jobStatus(jobId), readToken: granted } : undefined);
    const sink = { onStatus: () => undefined, onResults: () => undefined, onConsole: () => undefined, onCustom: () => undefined, onSliceError: () => undefined, onEnd: () => undefined };
    await connection.follow(jobId, sink, true, testWallet);
    const { grant } = socket.sent.find((message) => message.name === 'subscribe')!.payload as { grant: { request: { jobId: string; owner: string }; signature: string } };
    expect(grant.request).toMatchObject({ jobId, owner: testWallet.address });
    expect(recoverRequestSigner(SignedKind.readGrant, grant.request, grant.signature)).toBe(testWallet.address);
    expect(connection.readTokenOf(jobId)).toBe(granted);
    connection.detach(jobId, sink);
  });

  it('ignores malformed events, with a warning', async () => {
    const { socket, compute } = setup();
    socket.answer = () => ({ ok: true, jobId, total: 1, receipt: 'r', readToken });
    const job = compute.for([1], (i: number) => i);
    const results = jest.fn();
    job.on('result', results);
    const running = job.exec();
    await waitFor('the deploy to be acknowledged', () => job.id === jobId);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: -1, value: 1 }] });
    socket.receive('job:results', 'garbage');
    expect(results).not.toHaveBeenCalled();
    expect(warnings).toHaveBeenCalledTimes(2);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }) });
    await expect(running).resolves.toEqual([1]);
  });

  it('turns a refused deploy into a CommuneError with its code; unknown codes become ESCHEDULER', async () => {
    const { socket, compute } = setup();
    socket.answer = () => ({ ok: false, code: 'ENOFUNDS', message: 'no money' });
    await expect(compute.for([1], (i: number) => i).exec()).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOFUNDS, message: 'no money' }));
    socket.answer = () => ({ ok: false, code: 'EWHATEVER', message: 'odd' });
    await expect(compute.for([1], (i: number) => i).exec()).rejects.toEqual(codeMatching(ErrorCode.ESCHEDULER));
    socket.answer = () => ({ ok: 'maybe' });
    await expect(compute.for([1], (i: number) => i).exec()).rejects.toEqual(codeMatching(ErrorCode.ESCHEDULER));
  });

  it('says which scheduler did not answer when an ack times out', async () => {
    const { socket, compute } = setup();
    socket.connected = false;
    socket.answer = () => {
      socket.receive('connect_error', new Error('ECONNREFUSED'));
      throw new Error('operation has timed out');
    };
    await expect(compute.for([1], (i: number) => i).exec()).rejects.toEqual(
      expect.objectContaining({ code: ErrorCode.ESCHEDULER, message: expect.stringMatching(/scheduler\.test:4000.*did not answer deploy.*ECONNREFUSED/) }),
    );
  });

  it('drops events of jobs it is not waiting for', async () => {
    const { socket, compute, connection } = setup();
    socket.answer = () => ({ ok: true, status: jobStatus(jobId, { runStatus: 'cancelled' }) });
    await compute.cancel(jobId); // opens the socket, deploys nothing
    const sink = { onStatus: jest.fn(), onResults: jest.fn(), onConsole: jest.fn(), onCustom: jest.fn(), onSliceError: jest.fn(), onEnd: jest.fn() };
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    connection.attach(jobId, sink);
    expect(sink.onResults).not.toHaveBeenCalled();
  });

  it('reads job status and result pages over REST, with the scheduler error codes', async () => {
    const { connection } = setup();
    globalThis.fetch = jest.fn(async (url: string | URL | Request) => {
      if (String(url).endsWith('/missing')) return new Response(JSON.stringify({ code: 'ENOTFOUND', message: 'no such job' }), { status: 404 });
      return new Response(JSON.stringify(jobStatus(jobId, { total: 3 })), { status: 200 });
    }) as typeof fetch;
    await expect(connection.getStatus(jobId)).resolves.toMatchObject({ jobId, total: 3, owner: testWallet.address });
    await expect(connection.getStatus('missing')).rejects.toEqual(expect.objectContaining({ code: ErrorCode.ENOTFOUND, message: 'no such job' }));
  });

  it('with one URL, emits disconnect and connect on the job around socket.io\'s own reconnection', async () => {
    const { socket, compute, urls } = setup();
    socket.answer = (name) => {
      if (name === 'deploy') return { ok: true, jobId, total: 1, receipt: 'r', readToken };
      if (name === 'subscribe') return { ok: true, status: jobStatus(jobId, { total: 1 }) };
      return undefined;
    };
    const job = compute.for([1], (i: number) => i);
    const events: string[] = [];
    job.on('disconnect', (event: { scheduler: string }) => events.push(`disconnect ${event.scheduler}`));
    job.on('connect', (event: { scheduler: string }) => events.push(`connect ${event.scheduler}`));
    const running = job.exec();
    await waitFor('the deploy to be acknowledged', () => job.id === jobId);
    socket.receive('disconnect', 'transport close');
    socket.receive('connect_error', new Error('connect ECONNREFUSED'));
    expect(socket.disconnected).toBe(false); // socket.io keeps reconnecting the same socket
    socket.receive('connect');
    await waitFor('connect', () => events.length === 2);
    expect(events).toEqual(['disconnect http://scheduler.test:4000/', 'connect http://scheduler.test:4000/']);
    expect(urls).toHaveLength(1);
    socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
    socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }) });
    await expect(running).resolves.toEqual([1]);
  });

  describe('job event order', () => {
    const epoch = '0123456789abcdef';
    const at = (seq: number) => ({ cursor: { epoch, seq } });
    const consoleEvent = (seq: number, message: string) => ({ jobId, entries: [{ sliceIndex: 0, level: 'log', message }], ...at(seq) });
    /** A deployed two-slice job whose console messages and results are recorded. */
    async function deployedJob(setupAnswer: (name: string, payload: unknown) => unknown) {
      const { socket, compute } = setup();
      socket.answer = (name, payload) => (name === 'deploy' ? { ok: true, jobId, total: 2, receipt: 'r', readToken } : setupAnswer(name, payload));
      const job = compute.for(['x', 'y'], (s: string) => s);
      const heard: string[] = [];
      job.on('console', (event: { message: string }) => heard.push(event.message));
      job.on('result', (event: { result: { result: unknown } }) => heard.push(`result ${String(event.result.result)}`));
      const running = job.exec();
      await waitFor('the deploy to be acknowledged', () => job.id === jobId);
      return { socket, job, heard, running };
    }

    it('delivers live events in sequence order, drops copies, and fetches a hole that does not arrive from the log', async () => {
      const { socket, heard, running } = await deployedJob((name, payload) => {
        if (name !== 'job:events') return undefined;
        expect(payload).toEqual({ jobId, since: { epoch, seq: 2 }, readToken });
        return { ok: true, events: { cursor: { epoch, seq: 4 }, gap: false, more: false, events: [{ name: 'job:console', event: consoleEvent(3, 'three') }, { name: 'job:console', event: consoleEvent(4, 'four') }] } };
      });
      socket.receive('job:accepted', { jobId, total: 2, ...at(1) });
      socket.receive('job:console', consoleEvent(4, 'four'));
      socket.receive('job:console', consoleEvent(2, 'two'));
      socket.receive('job:console', consoleEvent(2, 'two'));
      await waitFor('the hole to be fetched', () => heard.length === 3);
      expect(heard).toEqual(['two', 'three', 'four']);
      socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'a' }, { sliceIndex: 1, value: 'b' }], ...at(5) });
      socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }), ...at(6) });
      expect(inspect(await running)).toBe("[ 'a', 'b' ]");
      expect(socket.sent.filter((message) => message.name === 'job:events')).toHaveLength(1);
    });

    it('after a reconnect, asks for the events after the last one delivered and delivers them (results included) before the end, without REST', async () => {
      const requested: string[] = [];
      globalThis.fetch = jest.fn(async (url: string | URL | Request) => {
        requested.push(String(url));
        return new Response('{}', { status: 500 });
      }) as typeof fetch;
      const { socket, heard, running } = await deployedJob((name) => {
        if (name !== 'subscribe') return undefined;
        return {
          ok: true,
          status: jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }),
          events: {
            cursor: { epoch, seq: 6 }, gap: false, more: false,
            events: [
              { name: 'job:console', event: consoleEvent(3, 'missed three') },
              { name: 'job:results', event: { jobId, results: [{ sliceIndex: 1, value: 'b' }], ...at(4) } },
              { name: 'job:console', event: consoleEvent(5, 'missed five') },
              { name: 'job:end', event: { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }), ...at(6) } },
            ],
          },
        };
      });
      socket.receive('job:accepted', { jobId, total: 2, ...at(1) });
      socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'a' }], ...at(2) });
      socket.receive('disconnect', 'transport close');
      socket.receive('connect');
      expect(inspect(await running)).toBe("[ 'a', 'b' ]");
      expect(socket.sent.find((message) => message.name === 'subscribe')?.payload).toEqual({ jobId, readToken, since: { epoch, seq: 2 } });
      expect(heard).toEqual(['result a', 'missed three', 'result b', 'missed five']);
      expect(requested).toEqual([]);
    });

    it('after a reconnect whose page says gap (Redis lost the log), falls back to the results over REST and goes on in the new epoch', async () => {
      const requested: string[] = [];
      globalThis.fetch = jest.fn(async (url: string | URL | Request) => {
        requested.push(String(url));
        return new Response(JSON.stringify({ jobId, results: [{ sliceIndex: 1, value: 'b' }], nextAfter: null }), { status: 200 });
      }) as typeof fetch;
      const newEpoch = 'fedcba9876543210';
      const { socket, heard, running } = await deployedJob((name) => {
        if (name !== 'subscribe') return undefined;
        return { ok: true, status: jobStatus(jobId, { total: 2, computed: 2 }), events: { cursor: { epoch: newEpoch, seq: 1 }, gap: true, more: false, events: [] } };
      });
      socket.receive('job:console', consoleEvent(1, 'one'));
      socket.receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'a' }], ...at(2) });
      socket.receive('disconnect', 'transport close');
      socket.receive('connect');
      await waitFor('the results missed to be fetched over REST', () => requested.length === 1);
      expect(requested).toEqual([`http://scheduler.test:4000/jobs/${jobId}/results?after=0&limit=1000`]);
      // Events of the old epoch are not taken for new ones; the new epoch goes on after its cursor.
      socket.receive('job:console', consoleEvent(2, 'old epoch copy'));
      socket.receive('job:console', { ...consoleEvent(2, 'after the loss'), cursor: { epoch: newEpoch, seq: 2 } });
      socket.receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }), cursor: { epoch: newEpoch, seq: 3 } });
      expect(inspect(await running)).toBe("[ 'a', 'b' ]");
      expect(heard).toEqual(['one', 'result a', 'result b', 'after the loss']);
    });
  });

  describe('several scheduler URLs', () => {
    const urlA = new URL('http://a.test:4000');
    const urlB = new URL('http://b.test:4000');

    function setupReplicas() {
      const sockets: FakeSocket[] = [];
      const urls: string[] = [];
      /** What the replica behind each new socket answers (a socket's `answer` can be changed later). */
      const replicas = { answer: (_url: string, _name: string, _payload: unknown): unknown => undefined };
      const connection = new SchedulerConnection([urlA, urlB], {
        ackTimeoutMs: 2_000,
        socketFactory: (url) => {
          urls.push(url);
          const socket = new FakeSocket();
          socket.answer = (name, payload) => replicas.answer(url, name, payload);
          sockets.push(socket);
          return socket.asClientSocket();
        },
      });
      const compute = createCompute({ scheduler: urlA, link: () => connection, signer: async () => testWallet });
      return { sockets, urls, connection, compute, replicas };
    }

    it('moves to the next replica when the one it is on closes, follows the job there, says so and fetches the results it missed', async () => {
      const { sockets, urls, connection, compute, replicas } = setupReplicas();
      replicas.answer = (_url, name) => (name === 'deploy' ? { ok: true, jobId, total: 3, receipt: 'r', readToken } : undefined);
      const requested: string[] = [];
      globalThis.fetch = jest.fn(async (url: string | URL | Request) => {
        requested.push(String(url));
        return new Response(JSON.stringify({ jobId, results: [{ sliceIndex: 1, value: 'away' }], nextAfter: 1 }), { status: 200 });
      }) as typeof fetch;
      const job = compute.for(['x', 'y', 'z'], (s: string) => s);
      const events: Array<[string, unknown]> = [];
      for (const name of ['disconnect', 'connect', 'result']) job.on(name, (event: unknown) => events.push([name, event]));
      const running = job.exec();
      await waitFor('a socket to replica A', () => sockets.length === 1);
      await waitFor('the deploy to be acknowledged', () => job.id === jobId);
      sockets[0].receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 'x' }] });
      // Replica A dies: the socket closes.
      sockets[0].receive('disconnect', 'transport close');
      expect(sockets[0].disconnected).toBe(true);
      await waitFor('a socket to replica B', () => sockets.length === 2);
      expect(urls).toEqual(['http://a.test:4000/client', 'http://b.test:4000/client']);
      expect(connection.url.href).toBe('http://b.test:4000/');
      sockets[1].answer = (name) => (name === 'subscribe' ? { ok: true, status: jobStatus(jobId, { total: 3, distributed: 3, computed: 2 }) } : undefined);
      sockets[1].receive('connect');
      await waitFor('the results missed while away', () => events.filter(([name]) => name === 'result').length === 2);
      expect(sockets[1].sent.find((message) => message.name === 'subscribe')?.payload).toEqual({ jobId, readToken });
      expect(requested[0]).toBe(`http://b.test:4000/jobs/${jobId}/results?after=0&limit=1000`);
      // Events after the move come from replica B.
      sockets[1].receive('job:results', { jobId, results: [{ sliceIndex: 2, value: 'z' }] });
      sockets[1].receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 3, computed: 3 }) });
      expect(inspect(await running)).toBe("[ 'x', 'away', 'z' ]");
      expect(events.map(([name]) => name)).toEqual(['result', 'disconnect', 'connect', 'result', 'result']);
      expect(events[1][1]).toEqual({ address: jobId, scheduler: 'http://a.test:4000/', reason: expect.stringMatching(/a\.test:4000.*transport close/) });
      expect(events[2][1]).toEqual({ address: jobId, scheduler: 'http://b.test:4000/', downtimeMs: expect.any(Number) });
      expect(sockets[1].disconnected).toBe(true); // no job left: the socket closes
    });

    it('sends a deploy again on the next replica when the first refuses the connection', async () => {
      const { sockets, compute, replicas } = setupReplicas();
      // A deploy sent to a socket that never connects (replica A) stays unanswered.
      replicas.answer = (url, name) => (url.startsWith('http://a.test') ? new Promise(() => undefined) : name === 'deploy' ? { ok: true, jobId, total: 1, receipt: 'r', readToken } : undefined);
      const job = compute.for([1], (i: number) => i);
      const running = job.exec();
      await waitFor('a socket to replica A', () => sockets.length === 1);
      sockets[0].connected = false;
      await waitFor('the deploy sent to A', () => sockets[0].sent.some((message) => message.name === 'deploy'));
      sockets[0].receive('connect_error', new Error('connect ECONNREFUSED'));
      await waitFor('a socket to replica B', () => sockets.length === 2);
      await waitFor('the deploy to be acknowledged by B', () => job.id === jobId);
      expect(sockets[1].sent.filter((message) => message.name === 'deploy')).toHaveLength(1);
      sockets[1].receive('job:results', { jobId, results: [{ sliceIndex: 0, value: 1 }] });
      sockets[1].receive('job:end', { jobId, status: jobStatus(jobId, { runStatus: 'finished', total: 1, computed: 1 }) });
      await expect(running).resolves.toEqual([1]);
    });

    it('rejects exec() with EUNAVAILABLE once no replica answered for unreachableTimeoutMs, and lets go of the job', async () => {
      const { sockets, compute, replicas } = setupReplicas();
      replicas.answer = (_url, name) => (name === 'deploy' ? { ok: true, jobId, total: 2, receipt: 'r', readToken } : undefined);
      const job = compute.for([1, 2], (i: number) => i);
      const seen: string[] = [];
      let unavailable: unknown;
      job.on('disconnect', () => seen.push('disconnect'));
      job.on('connect', () => seen.push('connect'));
      job.on('EUNAVAILABLE', (error: unknown) => {
        unavailable = error;
      });
      const running = job.exec(undefined, undefined, undefined, { unreachableTimeoutMs: 300 });
      expect(job.unreachableTimeoutMs).toBe(300);
      await waitFor('the deploy to be acknowledged', () => job.id === jobId);
      const started = Date.now();
      sockets[0].receive('disconnect', 'transport close');
      // Every replica refuses: each new socket fails at once.
      const refuse = setInterval(() => {
        const socket = sockets[sockets.length - 1];
        if (!socket.disconnected) socket.receive('connect_error', new Error('connect ECONNREFUSED'));
      }, 20);
      try {
        await expect(running).rejects.toEqual(expect.objectContaining({ code: ErrorCode.EUNAVAILABLE, message: expect.stringMatching(/no scheduler answered for 300 ms.*a\.test.*b\.test/) }));
      } finally {
        clearInterval(refuse);
      }
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      expect(seen).toEqual(['disconnect']);
      expect(unavailable).toEqual(expect.objectContaining({ code: ErrorCode.EUNAVAILABLE }));
      // Let go: no socket left open, no reconnection scheduled.
      const count = sockets.length;
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(sockets.length).toBe(count);
      expect(sockets.every((socket) => socket.disconnected)).toBe(true);
      // exec() again follows the job once a replica answers.
      replicas.answer = (_url, name) => (name === 'subscribe' ? { ok: true, status: jobStatus(jobId, { runStatus: 'finished', total: 2, computed: 2 }) } : undefined);
      globalThis.fetch = jest.fn(async () => new Response(JSON.stringify({ jobId, results: [{ sliceIndex: 0, value: 1 }, { sliceIndex: 1, value: 2 }], nextAfter: null }), { status: 200 })) as typeof fetch;
      const again = job.exec();
      await expect(again).resolves.toEqual([1, 2]);
    });

    it('sends a REST read to the next replica when one refuses the connection; a POST only when nothing was sent', async () => {
      const { connection } = setupReplicas();
      const requested: string[] = [];
      const refused = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } });
      const reset = () => Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNRESET' } });
      let failure = refused;
      globalThis.fetch = jest.fn(async (url: string | URL | Request) => {
        requested.push(String(url));
        if (String(url).startsWith('http://a.test')) throw failure();
        return new Response(JSON.stringify(jobStatus(jobId, { total: 3 })), { status: 200 });
      }) as typeof fetch;
      await expect(connection.getStatus(jobId)).resolves.toMatchObject({ jobId, total: 3 });
      expect(requested).toEqual([`http://a.test:4000/jobs/${jobId}`, `http://b.test:4000/jobs/${jobId}`]);
      requested.length = 0;
      await expect(connection.rest('POST', 'jobs/x/escrow', testWallet, {})).resolves.toBeDefined();
      expect(requested).toEqual(['http://a.test:4000/jobs/x/escrow', 'http://b.test:4000/jobs/x/escrow']);
      requested.length = 0;
      failure = reset; // the request may have reached replica A: not sent again
      await expect(connection.rest('POST', 'jobs/x/escrow', testWallet, {})).rejects.toEqual(
        expect.objectContaining({ code: ErrorCode.ESCHEDULER, message: expect.stringMatching(/a\.test:4000.*ECONNRESET/) }),
      );
      expect(requested).toEqual(['http://a.test:4000/jobs/x/escrow']);
    });

    it('refuses an unreachableTimeoutMs that is not a positive number', async () => {
      const { compute } = setupReplicas();
      await expect(compute.for([1], (i: number) => i).exec(undefined, undefined, undefined, { unreachableTimeoutMs: -1 })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    });
  });
});
