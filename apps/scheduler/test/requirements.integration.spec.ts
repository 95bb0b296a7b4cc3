import { Wallet } from 'ethers';
import { io } from 'socket.io-client';
import { Namespaces, type DeployReply, type JobStatus, type TaskGrant } from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { dropIsolated, isolatedEnvironment, waitFor } from '../../../test/support/services.js';
import { signedDeploy, signedFetch } from '../../../test/support/signing.js';
import { connectClient, request, type TestClientSocket, type TestWorkerSocket } from '../../../test/support/sockets.js';

describe('job requirements and worker capabilities (real Postgres and Redis)', () => {
  const env = isolatedEnvironment({ LEASE_TIMEOUT_MS: '5000', LEASE_SWEEP_INTERVAL_MS: '100' });
  let app: SchedulerApp;
  const owner = Wallet.createRandom();
  const sockets: Array<TestClientSocket | TestWorkerSocket> = [];

  beforeAll(async () => {
    app = await startScheduler(env);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await app?.close();
    await dropIsolated(env);
  });

  async function worker(workerId: string, capabilities: Record<string, unknown>): Promise<TestWorkerSocket> {
    const socket: TestWorkerSocket = io(app.url + Namespaces.worker, { transports: ['websocket'], forceNew: true, auth: { workerId, sandboxes: 1, capabilities } });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    return socket;
  }
  async function status(jobId: string): Promise<JobStatus> {
    return (await signedFetch(owner, app.url, 'GET', `/jobs/${jobId}`)).body as JobStatus;
  }

  it('leases a job only to a worker that meets its requirements, and its status says when none does', async () => {
    const client = await connectClient(app.url);
    sockets.push(client);
    const deployed = await request<DeployReply>(client, 'deploy', await signedDeploy(owner, {
      work: '(i) => i', inputSet: { kind: 'range', range: { start: 0, end: 2 } }, requirements: { engine: { spidermonkey: true } },
    }));
    if (!deployed.ok) throw new Error(`deploy refused: ${deployed.code} ${deployed.message}`);
    const { jobId } = deployed;
    expect((await status(jobId)).waitingFor ?? null).toBeNull();

    const v8 = await worker('w_requirements_v8', { engine: { v8: true, spidermonkey: false } });
    const refused = await request<TaskGrant>(v8, 'task:request', { maxSlices: 10 });
    expect(refused.tasks).toEqual([]);
    expect(await status(jobId)).toMatchObject({ runStatus: 'running', distributed: 0, waitingFor: 'no connected worker meets the job requirements and shares its compute groups' });

    const sm = await worker('w_requirements_sm', { engine: { spidermonkey: true } });
    const grant = await waitFor('a task for the SpiderMonkey worker', async () => {
      const reply = await request<TaskGrant>(sm, 'task:request', { maxSlices: 10 });
      return reply.tasks.find((task) => task.jobId === jobId);
    });
    expect(grant.slices.map((slice) => slice.sliceIndex)).toEqual([0, 1, 2]);
    expect(await status(jobId)).toMatchObject({ runStatus: 'running', distributed: 3, waitingFor: null });
  });
});
