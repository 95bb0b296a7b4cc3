import { randomBytes } from 'node:crypto';
import { Wallet, type Signer } from 'ethers';
import pg from 'pg';
import {
  encodeState, inputValuesDigest, inputValuesText, JobSpecSchema, Limits, OwnerRequestHeaders, ReadTokenHeader, SignedKind, signRequest,
  StateOperationSchema, type DeployReply,
} from '@commune/protocol';
import { startOneSchedulerCommune, type OneSchedulerCommune } from '../support/processes.js';
import { isolatedEnvironment, waitFor } from '../support/services.js';
import { signedDeploy, signedFetch } from '../support/signing.js';
import { connectClient, request, type TestClientSocket } from '../support/sockets.js';

type Reply = { ok?: boolean; code?: string; message?: string; [key: string]: unknown };
type Accepted = Extract<DeployReply, { ok: true }>;

const nonce = () => `n_${randomBytes(8).toString('hex')}`;
const soon = () => Date.now() + 60_000;

/**
 * The scheduler facing hostile clients, over real socket.io and HTTP against a real scheduler
 * process (128 MB heap, as `pnpm start` runs it) and a real worker: the job id reads nothing, a
 * signature of one kind is nothing as another kind, a nonce is good once, and a 2 MB array input
 * set costs a hash to verify instead of the scheduler's heap.
 */
describe('hostile clients (security, e2e)', () => {
  const env = isolatedEnvironment({ NODE_OPTIONS: '--max-old-space-size=128' });
  const owner = Wallet.createRandom();
  const stranger = Wallet.createRandom();
  let commune: OneSchedulerCommune;
  let url: string;
  let ownerSocket: TestClientSocket;
  let strangerSocket: TestClientSocket;
  const sockets: TestClientSocket[] = [];
  /** A finished job of the owner ([1, 2, 3] doubled, state {n: 1}) and one of the stranger. */
  let mine: Accepted;
  let theirs: Accepted;

  /** Jobs whose job:end each socket heard (listening from the socket's start, so no end is missed). */
  const endedJobs = new Map<TestClientSocket, Set<string>>();
  const client = async () => {
    const socket = await connectClient(url);
    sockets.push(socket);
    const ends = new Set<string>();
    endedJobs.set(socket, ends);
    socket.on('job:end', (event) => ends.add(event.jobId));
    return socket;
  };
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const response = await fetch(url + path, { headers });
    return { status: response.status, body: (await response.json().catch(() => undefined)) as Reply };
  };
  const ended = (socket: TestClientSocket, jobId: string) => waitFor(`job ${jobId} to end`, () => endedJobs.get(socket)!.has(jobId), 20_000);
  async function deploy(socket: TestClientSocket, wallet: Signer, spec: Parameters<typeof signedDeploy>[1]): Promise<Accepted> {
    const reply = await request<DeployReply>(socket, 'deploy', await signedDeploy(wallet, spec), 30_000);
    if (!reply.ok) throw new Error(`deploy refused: ${reply.code} ${reply.message}`);
    return reply;
  }
  async function deployAndFinish(socket: TestClientSocket, wallet: Signer, spec: Parameters<typeof signedDeploy>[1]): Promise<Accepted> {
    const reply = await deploy(socket, wallet, spec);
    await ended(socket, reply.jobId);
    return reply;
  }
  const schedulerAlive = async () => commune.scheduler.child.exitCode === null && (await fetch(`${url}/health`)).ok;

  beforeAll(async () => {
    commune = await startOneSchedulerCommune(env, 1, 2);
    url = commune.scheduler.url;
    ownerSocket = await client();
    strangerSocket = await client();
    mine = await deployAndFinish(ownerSocket, owner, { work: '(x) => x * 2', inputSet: { kind: 'array', values: [1, 2, 3] }, state: encodeState({ n: 1 }) });
    theirs = await deployAndFinish(strangerSocket, stranger, { work: '(x) => x', inputSet: { kind: 'array', values: [7] } });
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await commune?.stop();
  });

  it('a stranger with only the job id reads nothing: status, results, owner details, events, state (EPERM)', async () => {
    const jobId = mine.jobId;
    for (const path of [`/jobs/${jobId}`, `/jobs/${jobId}/results`]) {
      expect(await get(path)).toMatchObject({ status: 403, body: { code: 'EPERM' } });
      expect(await get(path, { [ReadTokenHeader]: randomBytes(32).toString('hex') })).toMatchObject({ status: 403, body: { code: 'EPERM' } });
      expect(await get(path, { [ReadTokenHeader]: theirs.readToken })).toMatchObject({ status: 403, body: { code: 'EPERM' } }); // a token of another job
      expect(await get(path, { [ReadTokenHeader]: 'not a token' })).toMatchObject({ status: 403, body: { code: 'EPERM' } });
      expect(await signedFetch(stranger, url, 'GET', path)).toMatchObject({ status: 403, body: { code: 'EPERM' } });
    }
    expect(await signedFetch(stranger, url, 'GET', `/jobs/${jobId}/info`)).toMatchObject({ status: 403, body: { code: 'EPERM' } });
    // No oracle: a job that does not exist answers the same.
    expect(await get('/jobs/j_0000000000nothere')).toMatchObject({ status: 403, body: { code: 'EPERM' } });
    for (const event of ['subscribe', 'state:get', 'state:subscribe']) {
      expect(await request<Reply>(strangerSocket, event, { jobId })).toMatchObject({ ok: false, code: 'EPERM' });
      expect(await request<Reply>(strangerSocket, event, { jobId, readToken: theirs.readToken })).toMatchObject({ ok: false, code: 'EPERM' });
    }
    // A grant for the stranger's own address is valid, but the stranger does not own the job ...
    const own = { jobId, owner: stranger.address, nonce: nonce(), expiresAt: soon() };
    expect(await request<Reply>(strangerSocket, 'subscribe', { jobId, grant: { request: own, signature: await signRequest(stranger, SignedKind.readGrant, own) } }))
      .toMatchObject({ ok: false, code: 'EPERM' });
    // ... and one claiming the owner's address is not the owner's signature.
    const forged = { jobId, owner: owner.address, nonce: nonce(), expiresAt: soon() };
    expect(await request<Reply>(strangerSocket, 'subscribe', { jobId, grant: { request: forged, signature: await signRequest(stranger, SignedKind.readGrant, forged) } }))
      .toMatchObject({ ok: false, code: 'EBADSIGNATURE' });

    // The refused subscriptions joined no room: a job of the owner runs and the stranger hears none of it.
    const heard: string[] = [];
    for (const name of ['job:accepted', 'job:status', 'job:results', 'job:console', 'job:custom', 'job:end', 'state:change'] as const) {
      strangerSocket.on(name, (event: { jobId: string }) => heard.push(`${name}:${event.jobId}`));
    }
    const next = await deploy(ownerSocket, owner, { work: '(x) => { console.log("private", x); return x; }', inputSet: { kind: 'range', range: { start: 0, end: 9 } } });
    const done = ended(ownerSocket, next.jobId);
    expect(await request<Reply>(strangerSocket, 'subscribe', { jobId: next.jobId })).toMatchObject({ ok: false, code: 'EPERM' });
    await done;
    expect(heard.filter((entry) => entry.endsWith(next.jobId))).toEqual([]);
  }, 30_000);

  it('the owner (signed) and a holder of the read token read the job', async () => {
    const jobId = mine.jobId;
    const byToken = { [ReadTokenHeader]: mine.readToken };
    expect(await get(`/jobs/${jobId}`, byToken)).toMatchObject({ status: 200, body: { jobId, owner: owner.address, runStatus: 'finished', computed: 3 } });
    expect((await get(`/jobs/${jobId}/results`, byToken)).body.results).toEqual([{ sliceIndex: 0, value: 2 }, { sliceIndex: 1, value: 4 }, { sliceIndex: 2, value: 6 }]);
    expect(await signedFetch(owner, url, 'GET', `/jobs/${jobId}`)).toMatchObject({ status: 200, body: { jobId, runStatus: 'finished' } });
    expect(await signedFetch(owner, url, 'GET', `/jobs/${jobId}/results`)).toMatchObject({ status: 200, body: { jobId } });

    const holder = await client(); // another program the owner handed the token to
    expect(await request<Reply>(holder, 'subscribe', { jobId, readToken: mine.readToken })).toMatchObject({ ok: true, status: { jobId, runStatus: 'finished' } });
    expect(await request<Reply>(holder, 'state:get', { jobId, readToken: mine.readToken })).toMatchObject({ ok: true, state: '{"n":1}' });
    expect(await request<Reply>(holder, 'state:subscribe', { jobId, readToken: mine.readToken })).toMatchObject({ ok: true });

    // compute.resume(id) without the token: the owner's signed grant is answered with a new token.
    const grant = { jobId, owner: owner.address, nonce: nonce(), expiresAt: soon() };
    const granted = await request<Reply>(await client(), 'subscribe', { jobId, grant: { request: grant, signature: await signRequest(owner, SignedKind.readGrant, grant) } });
    expect(granted).toMatchObject({ ok: true, status: { jobId }, readToken: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(granted.readToken).not.toBe(mine.readToken);
    expect(await get(`/jobs/${jobId}`, { [ReadTokenHeader]: granted.readToken as string })).toMatchObject({ status: 200 });
  }, 30_000);

  it('a signature of one kind is refused as another kind', async () => {
    const jobId = mine.jobId;
    // A job-action signature over exactly the fields of an owner REST request is not an owner request.
    const path = `/jobs/${jobId}`;
    const fields = { method: 'GET', path, owner: owner.address, nonce: nonce(), expiresAt: soon() };
    const asAction = await signRequest(owner, SignedKind.jobAction, fields);
    const headers = (signature: string) => ({
      [OwnerRequestHeaders.owner]: fields.owner, [OwnerRequestHeaders.nonce]: fields.nonce, [OwnerRequestHeaders.expiresAt]: String(fields.expiresAt), [OwnerRequestHeaders.signature]: signature,
    });
    expect(await get(path, headers(asAction))).toMatchObject({ status: 401, body: { code: 'EBADSIGNATURE' } });
    expect(await get(path, headers(await signRequest(owner, SignedKind.ownerRequest, fields)))).toMatchObject({ status: 200 });

    // The owner's deploy (or job-action, owner-request) signature over a state operation changes
    // nothing: made for another kind, it recovers to no one who may change the state (EPERM).
    const operationOf = () => ({ jobId, operation: StateOperationSchema.parse({ kind: 'increment', property: 'n', by: 1 }), nonce: nonce(), expiresAt: soon() });
    for (const kind of [SignedKind.deploy, SignedKind.jobAction, SignedKind.ownerRequest]) {
      const wrong = operationOf();
      expect(await request<Reply>(ownerSocket, 'state:op', { request: wrong, signature: await signRequest(owner, kind, wrong) })).toMatchObject({ ok: false, code: 'EPERM' });
    }
    const operation = operationOf();
    expect(await request<Reply>(ownerSocket, 'state:get', { jobId, readToken: mine.readToken })).toMatchObject({ ok: true, version: 0, state: '{"n":1}' });
    expect(await request<Reply>(ownerSocket, 'state:op', { request: operation, signature: await signRequest(owner, SignedKind.stateOperation, operation) }))
      .toMatchObject({ ok: true, version: 1, state: '{"n":2}' });

    // An owner-request signature is no read grant; a deploy signed over its values (the old form) is no deploy.
    const grant = { jobId, owner: owner.address, nonce: nonce(), expiresAt: soon() };
    expect(await request<Reply>(strangerSocket, 'subscribe', { jobId, grant: { request: grant, signature: await signRequest(owner, SignedKind.ownerRequest, grant) } }))
      .toMatchObject({ ok: false, code: 'EBADSIGNATURE' });
    const spec = JobSpecSchema.parse({ owner: owner.address, work: '(x) => x', inputSet: { kind: 'array', values: [1, 2] }, nonce: nonce(), issuedAt: Date.now(), expiresAt: soon() });
    expect(await request<Reply>(ownerSocket, 'deploy', { job: spec, signature: await signRequest(owner, SignedKind.deploy, spec) })).toMatchObject({ ok: false, code: 'EBADSIGNATURE' });
  }, 30_000);

  it('replayed nonces are refused (EREPLAY): owner REST, job actions, read grants, state operations', async () => {
    const path = `/jobs/${mine.jobId}`;
    const once = { nonce: nonce(), expiresAt: soon() };
    expect(await signedFetch(owner, url, 'GET', path, once)).toMatchObject({ status: 200 });
    expect(await signedFetch(owner, url, 'GET', path, once)).toMatchObject({ status: 409, body: { code: 'EREPLAY' } });

    const running = await deploy(ownerSocket, owner, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 1e9 } } });
    const pause = { action: 'pause', jobId: running.jobId, nonce: nonce(), expiresAt: soon() };
    const signedPause = { request: pause, signature: await signRequest(owner, SignedKind.jobAction, pause) };
    expect(await request<Reply>(ownerSocket, 'job:action', signedPause)).toMatchObject({ ok: true, status: { runStatus: 'paused' } });
    expect(await request<Reply>(ownerSocket, 'job:action', signedPause)).toMatchObject({ ok: false, code: 'EREPLAY' });
    const cancel = { action: 'cancel', jobId: running.jobId, nonce: nonce(), expiresAt: soon() };
    expect(await request<Reply>(ownerSocket, 'job:action', { request: cancel, signature: await signRequest(owner, SignedKind.jobAction, cancel) }))
      .toMatchObject({ ok: true, status: { runStatus: 'cancelled' } });

    const grant = { jobId: mine.jobId, owner: owner.address, nonce: nonce(), expiresAt: soon() };
    const signedGrant = { request: grant, signature: await signRequest(owner, SignedKind.readGrant, grant) };
    expect(await request<Reply>(await client(), 'subscribe', { jobId: mine.jobId, grant: signedGrant })).toMatchObject({ ok: true });
    expect(await request<Reply>(await client(), 'subscribe', { jobId: mine.jobId, grant: signedGrant })).toMatchObject({ ok: false, code: 'EREPLAY' });

    const operation = { jobId: mine.jobId, operation: StateOperationSchema.parse({ kind: 'increment', property: 'n', by: 10 }), nonce: nonce(), expiresAt: soon() };
    const signedOperation = { request: operation, signature: await signRequest(owner, SignedKind.stateOperation, operation) };
    expect(await request<Reply>(ownerSocket, 'state:op', signedOperation)).toMatchObject({ ok: true });
    expect(await request<Reply>(ownerSocket, 'state:op', signedOperation)).toMatchObject({ ok: false, code: 'EREPLAY' });
  }, 30_000);

  it('2 MB array input sets do not take down a 128 MB-heap scheduler; identical sets are stored once', async () => {
    const values = Array.from({ length: 260_000 }, (_, i) => 1_000_000 + i); // 2.08 MB of JSON
    expect(Buffer.byteLength(inputValuesText(values))).toBeGreaterThan(2_000_000);
    const started = performance.now();
    const first = await deploy(ownerSocket, owner, { work: '(x) => x', inputSet: { kind: 'array', values } });
    const firstMs = performance.now() - started;
    expect(first.total).toBe(values.length);
    expect(await schedulerAlive()).toBe(true);
    // Three more at once over three connections (one takes one large message at a time), the same values each time.
    const connections = await Promise.all([0, 1, 2].map(() => client()));
    const more = await Promise.all(connections.map((socket) => deploy(socket, owner, { work: '(x) => x', inputSet: { kind: 'array', values } })));
    expect(more.map((reply) => reply.total)).toEqual([values.length, values.length, values.length]);
    expect(await schedulerAlive()).toBe(true);
    process.stderr.write(`hostile-client: one 2.08 MB array deploy took ${firstMs.toFixed(0)} ms on the 128 MB-heap scheduler\n`);

    const client_ = new pg.Client({ connectionString: env.DATABASE_URL });
    await client_.connect();
    try {
      const rows = await client_.query(`SELECT count(*)::int AS n FROM "${env.DATABASE_SCHEMA}".input_sets WHERE hash = $1`, [inputValuesDigest(inputValuesText(values))]);
      expect(rows.rows[0].n).toBe(1);
    } finally {
      await client_.end();
    }
    for (const job of [first, ...more]) {
      const cancel = { action: 'cancel', jobId: job.jobId, nonce: nonce(), expiresAt: soon() };
      expect(await request<Reply>(ownerSocket, 'job:action', { request: cancel, signature: await signRequest(owner, SignedKind.jobAction, cancel) })).toMatchObject({ ok: true });
    }

    // Above maxInputSetBytes but within one message: ETOOBIG, named, and the scheduler stays up.
    const tooBig = Array.from({ length: Math.ceil((Limits.maxInputSetBytes + 100_000) / 8) }, (_, i) => 1_000_000 + i);
    const refused = await request<Reply>(ownerSocket, 'deploy', await signedDeploy(owner, { work: '(x) => x', inputSet: { kind: 'array', values: tooBig } }), 30_000);
    expect(refused).toMatchObject({ ok: false, code: 'ETOOBIG' });
    expect(await schedulerAlive()).toBe(true);
  }, 60_000);
});
