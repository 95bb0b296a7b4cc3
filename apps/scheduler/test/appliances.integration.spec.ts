import { randomBytes } from 'node:crypto';
import { Wallet } from 'ethers';
import { ApplianceSpecSchema, hashOf, SignedKind, signRequest, type ApplianceSpecInput, type DeployReply, type JobStatus } from '@commune/protocol';
import { startScheduler, type SchedulerApp } from '../src/scheduler-app.js';
import { dropIsolated, isolatedEnvironment } from '../../../test/support/services.js';
import { signedDeploy, signedFetch } from '../../../test/support/signing.js';
import { connectClient, request, type TestClientSocket } from '../../../test/support/sockets.js';

/**
 * Appliances on the scheduler (spec "Appliance Handles"): signed publication with its rules
 * (EEXIST, ENAMESPACE, EWORKTOOBIG, EINVAL), resolution of a name and an npm range or "#versionId"
 * to one version, function sources, and jobs that run an appliance function.
 */
describe('scheduler appliances (real Postgres and Redis)', () => {
  // A work limit above the HTTP body parser's default (100 kB), which the scheduler raises for publications.
  const maxWorkBytes = 300_000;
  const env = isolatedEnvironment({ MAX_WORK_BYTES: String(maxWorkBytes) });
  let scheduler: SchedulerApp;
  const publisher = Wallet.createRandom();
  const stranger = Wallet.createRandom();
  const sockets: TestClientSocket[] = [];

  beforeAll(async () => {
    scheduler = await startScheduler(env);
  });
  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await scheduler?.close();
    await dropIsolated(env);
  });

  const functions = [
    { name: 'square', work: '(i) => { progress(1); return i * i; }' },
    { name: 'name', work: '(i) => { progress(1); return "n" + i; }', estimation: '(i) => ({ cpuHours: 1 })', sliceProfile: { cpuHours: 0.0001 } },
  ];
  const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

  async function signedPublication(fields: Partial<ApplianceSpecInput> & Pick<ApplianceSpecInput, 'name' | 'version'>, wallet: Wallet | ReturnType<typeof Wallet.createRandom> = publisher) {
    const now = Date.now();
    const appliance = ApplianceSpecSchema.parse({
      publisher: wallet.address,
      metadata: { name: 'Math utilities', description: 'squares and names', website: 'https://example.org', hashTags: 'math,demo' },
      functions,
      nonce: randomBytes(12).toString('hex'),
      issuedAt: now,
      expiresAt: now + 60_000,
      ...fields,
    });
    return { appliance, signature: await signRequest(wallet, SignedKind.appliance, appliance) };
  }
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- tests read whatever the scheduler answered
  async function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const response = await fetch(scheduler.url + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: response.status, body: await response.json().catch(() => undefined) };
  }
  async function publish(fields: Partial<ApplianceSpecInput> & Pick<ApplianceSpecInput, 'name' | 'version'>, wallet: Wallet | ReturnType<typeof Wallet.createRandom> = publisher) {
    return call('POST', '/appliances', await signedPublication(fields, wallet));
  }
  const resolve = (name: string, version?: string) => call('GET', `/appliances/${name}${version === undefined ? '' : `?version=${encodeURIComponent(version)}`}`);

  it('publishes a version: versionId is the hash of the signed publication, the receipt acknowledges it, it costs nothing', async () => {
    const name = uniqueName('math');
    const request = await signedPublication({ name, version: '1.0.0' });
    const reply = await call('POST', '/appliances', request);
    expect(reply.status).toBe(201);
    expect(reply.body).toMatchObject({ name, version: '1.0.0', cost: '0', versionId: hashOf(request.appliance).slice(2) });
    expect(reply.body.receipt).toBe(hashOf({ versionId: reply.body.versionId, signature: request.signature }));
    expect(reply.body.applianceId).toMatch(/^a_[0-9a-z]+$/);

    const resolved = await resolve(name, '1.0.0');
    expect(resolved.status).toBe(200);
    expect(resolved.body).toMatchObject({
      applianceId: reply.body.applianceId, versionId: reply.body.versionId, name, version: '1.0.0', publisher: publisher.address,
      metadata: { name: 'Math utilities', description: 'squares and names', website: 'https://example.org', hashTags: 'math,demo' },
    });
    expect(resolved.body.functions.map((fn: { name: string }) => fn.name).sort()).toEqual(['name', 'square']);
    const named = resolved.body.functions.find((fn: { name: string }) => fn.name === 'name');
    expect(named).toMatchObject({ workHash: hashOf(functions[1]!.work), estimation: '(i) => ({ cpuHours: 1 })', sliceProfile: { cpuHours: 0.0001 } });

    const source = await call('GET', `/appliances/versions/${reply.body.versionId}/functions/square`);
    expect(source.body).toEqual({ versionId: reply.body.versionId, function: 'square', work: functions[0]!.work, workHash: hashOf(functions[0]!.work), estimation: null });
  });

  it('the same signed publication sent again gets the first answer', async () => {
    const request = await signedPublication({ name: uniqueName('resend'), version: '1.0.0' });
    const first = await call('POST', '/appliances', request);
    const again = await call('POST', '/appliances', request);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
  });

  it('publishing the same name and version twice fails with EEXIST', async () => {
    const name = uniqueName('twice');
    expect((await publish({ name, version: '1.0.0' })).status).toBe(201);
    const second = await publish({ name, version: '1.0.0', functions: [{ name: 'square', work: '(i) => i * i * i' }] });
    expect(second.status).toBe(409);
    expect(second.body).toMatchObject({ code: 'EEXIST' });
  });

  it('a name belongs to the key that published it first: another key fails with ENAMESPACE, the owner may publish new versions', async () => {
    const name = uniqueName('owned');
    expect((await publish({ name, version: '1.0.0' })).status).toBe(201);
    const taken = await publish({ name, version: '1.0.1' }, stranger);
    expect(taken.status).toBe(403);
    expect(taken.body).toMatchObject({ code: 'ENAMESPACE' });
    expect((await publish({ name, version: '1.0.1' })).status).toBe(201);
  });

  it('two keys publishing a new name at the same moment: one reserves it, the other gets ENAMESPACE', async () => {
    const name = uniqueName('race');
    const replies = await Promise.all([publish({ name, version: '1.0.0' }), publish({ name, version: '1.0.1' }, stranger)]);
    expect(replies.map((reply) => reply.status).sort()).toEqual([201, 403]);
    const loser = replies.find((reply) => reply.status === 403)!;
    expect(loser.body).toMatchObject({ code: 'ENAMESPACE' });
    const winner = replies.find((reply) => reply.status === 201)!;
    expect((await resolve(name, '*')).body).toMatchObject({ versionId: winner.body.versionId, publisher: winner === replies[0] ? publisher.address : stranger.address });
  });

  it('resolves a range to the highest version satisfying it, and "#versionId" to exactly that version', async () => {
    const name = uniqueName('ranges');
    const ids: Record<string, string> = {};
    for (const version of ['1.0.0', '1.2.0', '1.10.0', '2.0.0', '2.1.0-beta.1']) ids[version] = (await publish({ name, version })).body.versionId;
    const cases: Array<[string | undefined, string]> = [
      ['^1.0.0', '1.10.0'], ['~1.2', '1.2.0'], ['>=1 <2', '1.10.0'], ['*', '2.0.0'], [undefined, '2.0.0'], ['1.0.0', '1.0.0'], ['2.1.0-beta.1', '2.1.0-beta.1'],
    ];
    for (const [range, version] of cases) {
      const resolved = await resolve(name, range);
      expect({ range, version: resolved.body.version, versionId: resolved.body.versionId }).toEqual({ range, version, versionId: ids[version] });
    }
    const exact = await resolve(name, `#${ids['1.2.0']}`);
    expect(exact.body).toMatchObject({ version: '1.2.0', versionId: ids['1.2.0'] });
    expect((await call('GET', `/appliances/versions/${ids['2.0.0']}`)).body).toMatchObject({ name, version: '2.0.0' });
  });

  it('answers ENOTFOUND for an unknown name, a range nothing satisfies, a version id of another appliance or an unknown function', async () => {
    const name = uniqueName('missing');
    const { versionId } = (await publish({ name, version: '1.0.0' })).body;
    const other = (await publish({ name: uniqueName('other'), version: '1.0.0' })).body.versionId;
    for (const reply of [
      await resolve(uniqueName('nobody'), '*'),
      await resolve(name, '^2.0.0'),
      await resolve(name, `#${other}`),
      await call('GET', `/appliances/versions/${versionId}/functions/cube`),
    ]) {
      expect(reply.status).toBe(404);
      expect(reply.body).toMatchObject({ code: 'ENOTFOUND' });
    }
  });

  it('refuses invalid versions, ranges, names and signatures with clear codes', async () => {
    const name = uniqueName('invalid');
    for (const version of ['1.0', 'v1.0.0', '^1.0.0']) {
      const reply = await publish({ name, version });
      expect(reply.status).toBe(400);
      expect(reply.body).toMatchObject({ code: 'EINVAL' });
      expect(reply.body.message).toContain(version);
    }
    expect((await resolve(name, 'latest')).body).toMatchObject({ code: 'EINVAL' });
    expect((await resolve('Not_Lowercase', '*')).body).toMatchObject({ code: 'EINVAL' });
    const request = await signedPublication({ name, version: '1.0.0' });
    const forged = await call('POST', '/appliances', { ...request, signature: await signRequest(stranger, SignedKind.appliance, request.appliance) });
    expect(forged.body).toMatchObject({ code: 'EBADSIGNATURE' });
    expect((await call('POST', '/appliances', { appliance: { name } })).body).toMatchObject({ code: 'EINVAL' });
  });

  it('refuses functions larger together than MAX_WORK_BYTES with EWORKTOOBIG; one that fits is published although its body is larger than 100 kB', async () => {
    const big = `(i) => ${'7'.repeat(maxWorkBytes / 2)}`;
    const reply = await publish({ name: uniqueName('big'), version: '1.0.0', functions: [{ name: 'a', work: big }, { name: 'b', work: big }] });
    expect(reply.status).toBe(413);
    expect(reply.body).toMatchObject({ code: 'EWORKTOOBIG' });
    expect((await publish({ name: uniqueName('big'), version: '1.0.0', functions: [{ name: 'a', work: big }] })).status).toBe(201);
  });

  it('a job that names an appliance function runs its published source, and its status says where it came from', async () => {
    const name = uniqueName('jobs');
    const published = (await publish({ name, version: '1.0.0' })).body;
    const socket = await connectClient(scheduler.url);
    sockets.push(socket);
    const appliance = { versionId: published.versionId, function: 'square' };
    const deployed = await request<DeployReply>(socket, 'deploy', await signedDeploy(publisher, { work: functions[0]!.work, inputSet: { kind: 'range', range: { start: 1, end: 3 } }, appliance }));
    expect(deployed.ok).toBe(true);
    const status = (await signedFetch(publisher, scheduler.url, 'GET', `/jobs/${(deployed as { jobId: string }).jobId}`)).body as JobStatus;
    expect(status.appliance).toEqual({ applianceId: published.applianceId, name, version: '1.0.0', versionId: published.versionId, function: 'square' });

    const otherWork = await request<DeployReply>(socket, 'deploy', await signedDeploy(publisher, { work: '(i) => i', inputSet: { kind: 'range', range: { start: 1, end: 3 } }, appliance }));
    expect(otherWork).toMatchObject({ ok: false, code: 'EINVAL' });
    const unknownFunction = await request<DeployReply>(socket, 'deploy', await signedDeploy(publisher, { work: functions[0]!.work, inputSet: { kind: 'range', range: { start: 1, end: 3 } }, appliance: { ...appliance, function: 'cube' } }));
    expect(unknownFunction).toMatchObject({ ok: false, code: 'ENOTFOUND' });
  });
});
