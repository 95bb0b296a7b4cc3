import { randomBytes } from 'node:crypto';
import { Wallet } from 'ethers';
import { io } from 'socket.io-client';
import {
  Namespaces, joinHashOf, SignedKind, signRequest, type ComputeGroupCredential, type CreateComputeGroupInput, type DeployReply, type JobStatus, type TaskGrant,
} from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { dropIsolated, isolatedEnvironment, uniqueName, waitFor } from '../../../test/support/services.js';
import { signedDeploy, signedFetch } from '../../../test/support/signing.js';
import { connectClient, request, type TestClientSocket, type TestWorkerSocket } from '../../../test/support/sockets.js';

/**
 * Compute groups against real Postgres and Redis: creation signed by the owner, credentials
 * checked at deploy and at worker connection, and dispatch only to workers sharing a group.
 */
describe('compute groups (real Postgres and Redis)', () => {
  const env = isolatedEnvironment({ LEASE_TIMEOUT_MS: '5000', LEASE_SWEEP_INTERVAL_MS: '100' });
  let app: SchedulerApp;
  const owner = Wallet.createRandom();
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];
  const lab = { joinKey: uniqueName('lab').toLowerCase(), joinSecret: 'correct horse battery staple' };
  const other = { joinKey: uniqueName('other').toLowerCase(), joinSecret: 's3cret' };

  beforeAll(async () => {
    app = await startScheduler(env);
    for (const group of [lab, other]) expect((await create({ joinKey: group.joinKey, joinHash: joinHashOf(group.joinKey, group.joinSecret), description: 'test group' })).status).toBe(201);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await app?.close();
    await dropIsolated(env);
  });

  async function create(fields: Omit<CreateComputeGroupInput, 'owner' | 'nonce' | 'expiresAt'>, signer = owner, tamper: (body: { request: object; signature: string }) => void = () => {}) {
    const requestBody = { ...fields, owner: signer.address, nonce: randomBytes(8).toString('hex'), expiresAt: Date.now() + 60_000 };
    const body = { request: requestBody, signature: await signRequest(signer, SignedKind.computeGroup, requestBody) };
    tamper(body);
    const response = await fetch(`${app.url}/compute-groups`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: response.status, body: (await response.json()) as { code?: string; message?: string; joinKey?: string; owner?: string } };
  }
  async function worker(workerId: string, computeGroups: ComputeGroupCredential[], publicGroup = true): Promise<TestWorkerSocket> {
    const socket: TestWorkerSocket = io(app.url + Namespaces.worker, { transports: ['websocket'], forceNew: true, auth: { workerId, sandboxes: 1, computeGroups, publicGroup } });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return socket;
  }
  async function deploy(computeGroups?: ComputeGroupCredential[]): Promise<DeployReply> {
    const client = await connectClient(app.url);
    sockets.push(client);
    return request<DeployReply>(client, 'deploy', await signedDeploy(owner, { work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 3 } }, ...(computeGroups ? { computeGroups } : {}) }));
  }
  async function tasksOf(socket: TestWorkerSocket, jobId: string) {
    return (await request<TaskGrant>(socket, 'task:request', { maxSlices: 10 })).tasks.filter((task) => task.jobId === jobId);
  }
  async function cancel(jobId: string) {
    const client = await connectClient(app.url);
    sockets.push(client);
    const body = { action: 'cancel', jobId, nonce: randomBytes(8).toString('hex'), expiresAt: Date.now() + 60_000 };
    await request(client, 'job:action', { request: body, signature: await signRequest(owner, SignedKind.jobAction, body) });
  }

  it('creates a group owned by the signer, describes it without its hash, and refuses a taken key (EEXIST) or a forged signature', async () => {
    const info = await (await fetch(`${app.url}/compute-groups/${lab.joinKey}`)).json();
    expect(info).toEqual({ joinKey: lab.joinKey, owner: owner.address, description: 'test group', createdAt: expect.any(String) });
    const again = await create({ joinKey: lab.joinKey, joinHash: joinHashOf(lab.joinKey, 'another secret') });
    expect(again).toMatchObject({ status: 409, body: { code: 'EEXIST' } });
    const forged = await create({ joinKey: 'forged-group', joinHash: joinHashOf('forged-group', 'x') }, owner, (body) => {
      body.request = { ...body.request, owner: Wallet.createRandom().address };
    });
    expect(forged).toMatchObject({ status: 401, body: { code: 'EBADSIGNATURE' } });
    expect((await create({ joinKey: 'public', joinHash: joinHashOf('public', 'x') })).body.code).toBe('EINVAL');
    expect((await fetch(`${app.url}/compute-groups/no-such-group`)).status).toBe(404);
  });

  it('refuses a deploy whose group credential is wrong (EPERM) or names no group (ENOTFOUND)', async () => {
    expect(await deploy([{ joinKey: lab.joinKey, joinSecret: 'wrong' }])).toMatchObject({ ok: false, code: 'EPERM' });
    expect(await deploy([{ joinKey: 'no-such-group', joinSecret: 'x' }])).toMatchObject({ ok: false, code: 'ENOTFOUND' });
  });

  it('refuses a worker whose group credential is wrong, at connection, saying why', async () => {
    await expect(worker('w_badgroup_001', [{ joinKey: lab.joinKey, joinSecret: 'wrong' }])).rejects.toThrow(/EPERM: wrong joinSecret for compute group/);
  });

  it('gives a group job only to workers in that group (secret or hash), and its status says when none is connected', async () => {
    const reply = await deploy([lab]);
    if (!reply.ok) throw new Error(reply.message);
    const outsider = await worker('w_outsider_01', [other]);
    expect(await tasksOf(outsider, reply.jobId)).toEqual([]);
    const status = await waitFor('the job to say no connected worker can run it', async () => {
      const current = (await signedFetch(owner, app.url, 'GET', `/jobs/${reply.jobId}`)).body as JobStatus;
      return current.waitingFor ? current : null;
    });
    expect(status.waitingFor).toMatch(/no connected worker/i);
    const member = await worker('w_member_0001', [{ joinKey: lab.joinKey, joinHash: joinHashOf(lab.joinKey, lab.joinSecret) }]);
    const tasks = await tasksOf(member, reply.jobId);
    expect(tasks.flatMap((task) => task.slices.map((slice) => slice.sliceIndex))).toEqual([0, 1, 2, 3]);
    await cancel(reply.jobId);
  });

  it('keeps public jobs from workers that left the public group, and gives them to every other worker', async () => {
    const reply = await deploy();
    if (!reply.ok) throw new Error(reply.message);
    const private_ = await worker('w_private_001', [lab], false);
    expect(await tasksOf(private_, reply.jobId)).toEqual([]);
    const grouped = await worker('w_grouped_001', [lab]);
    expect((await tasksOf(grouped, reply.jobId)).length).toBeGreaterThan(0);
    await cancel(reply.jobId);
  });
});
