import { jest } from '@jest/globals';
import { ApplianceSpecSchema, CommuneError, hashOf, deploySigningPayload, recoverRequestSigner, SignedKind, type ApplianceVersionInfo } from '@commune/protocol';
import { Appliance } from './appliance.js';
import { createCompute } from './compute.js';
import { contextFor, FakeLink, testWallet } from './test-support.js';

const codeMatching = (code: string) => expect.objectContaining({ code });
const versionId = 'ab'.repeat(32);
const squareSource = '(i) => { progress(1); return i * i; }';

function setup(squareWork = squareSource) {
  const link = new FakeLink();
  const info: ApplianceVersionInfo = {
    applianceId: 'a_0123456789',
    versionId,
    name: 'math-util',
    version: '1.2.0',
    publisher: testWallet.address,
    metadata: { description: 'squares', website: 'https://example.org' },
    requirePath: [],
    functions: [{ name: 'square', workHash: hashOf(squareSource), workBytes: squareSource.length, estimation: null, sliceProfile: null, requirePath: [], modulePath: [] }],
    publishedAt: new Date(0).toISOString(),
  };
  link.restReply = (method, path) => {
    if (path.startsWith('appliances/math-util?')) return info;
    if (path === `appliances/versions/${versionId}/functions/square`) return { versionId, function: 'square', work: squareWork, workHash: hashOf(squareWork), estimation: null };
    throw new CommuneError('ENOTFOUND', `no answer for ${method} ${path}`);
  };
  return { link, compute: createCompute(contextFor(link)) };
}

describe(Appliance.name, () => {
  afterEach(() => jest.restoreAllMocks());

  it('compute.Appliance makes appliance handles; form 2 defaults to the highest version ("*")', () => {
    const { compute } = setup();
    const appliance = new compute.Appliance('math-util');
    expect(appliance).toBeInstanceOf(Appliance);
    expect(appliance.versionRange).toBe('*');
    expect(appliance.name).toBe('math-util');
  });

  it('refuses bad names, function names, work and keystores (EINVAL), and defineFunction on a published appliance handle (EPERM)', () => {
    const { compute } = setup();
    expect(() => new compute.Appliance('Math Util', '1.0.0')).toThrow(codeMatching('EINVAL'));
    expect(() => new compute.Appliance('math-util', '1.0.0', {} as never)).toThrow(codeMatching('EINVAL'));
    const draft = new compute.Appliance('math-util', '1.0.0', testWallet);
    expect(() => draft.defineFunction('not a name', (i: number) => i)).toThrow(codeMatching('EINVAL'));
    expect(() => draft.defineFunction('bound', ((i: number) => i).bind(null))).toThrow(codeMatching('EINVAL'));
    draft.defineFunction('square', (i: number) => i * i);
    expect(() => draft.defineFunction('square', (i: number) => i)).toThrow(codeMatching('EINVAL'));
    expect(() => new compute.Appliance('math-util', '^1.0.0').defineFunction('square', (i: number) => i)).toThrow(codeMatching('EPERM'));
    expect(() => new compute.Appliance('math-util', '^1.0.0').for(1, 3, (i: number) => i)).toThrow(codeMatching('EINVAL'));
  });

  it('publish() signs every function and the metadata with the publishKeystore and POSTs it to /appliances', async () => {
    const { compute } = setup();
    const posted: Array<{ url: string; body: { appliance: unknown; signature: string } }> = [];
    jest.spyOn(globalThis, 'fetch').mockImplementation(async (url, init) => {
      posted.push({ url: String(url), body: JSON.parse(String(init?.body)) });
      return new Response(JSON.stringify({ applianceId: 'a_0123456789', versionId, name: 'math-util', version: '1.0.0', receipt: '0x' + 'cd'.repeat(32), cost: '0', publishedAt: new Date(0).toISOString() }), { status: 201 });
    });
    const appliance = new compute.Appliance('math-util', '1.0.0', testWallet);
    appliance.description = 'squares';
    appliance.hashTags = 'math';
    // Sources as strings: the test transpiler rewrites function sources.
    const square = appliance.defineFunction('square', '(i) => i * i', '(i) => ({ cpuHours: i })', { cpuHours: 0.5 });
    square.requirePath.push('lib');
    const result = await appliance.publish();
    expect(result).toMatchObject({ versionId, cost: '0', id: 'a_0123456789' });
    expect(appliance.versionId).toBe(versionId);
    expect(posted).toHaveLength(1);
    expect(posted[0]!.url).toBe('http://scheduler.test/appliances');
    const spec = ApplianceSpecSchema.parse(posted[0]!.body.appliance);
    expect(recoverRequestSigner(SignedKind.appliance, spec, posted[0]!.body.signature)).toBe(testWallet.address);
    expect(spec).toMatchObject({
      name: 'math-util', version: '1.0.0', publisher: testWallet.address, metadata: { name: 'math-util', description: 'squares', hashTags: 'math' },
      functions: [{ name: 'square', work: '(i) => i * i', estimation: '(i) => ({ cpuHours: i })', sliceProfile: { cpuHours: 0.5 }, requirePath: ['lib'] }],
    });
    expect(() => appliance.defineFunction('late', (i: number) => i)).toThrow(codeMatching('EPERM'));
  });

  it("publish() keeps the scheduler's refusal codes (EEXIST) and can be retried; refund() is EPERM (publication is free)", async () => {
    const { compute } = setup();
    jest.spyOn(globalThis, 'fetch').mockImplementation(async () => new Response(JSON.stringify({ code: 'EEXIST', message: 'version 1.0.0 exists' }), { status: 409 }));
    const appliance = new compute.Appliance('math-util', '1.0.0', testWallet);
    await expect(appliance.publish()).rejects.toMatchObject({ code: 'EINVAL' }); // no functions yet
    appliance.defineFunction('square', (i: number) => i * i);
    await expect(appliance.publish()).rejects.toMatchObject({ code: 'EEXIST' });
    await expect(appliance.refund()).rejects.toMatchObject({ code: 'EPERM' });
  });

  it('appliance.for / appliance.do resolve the range and fetch the source on the first run; localExec() runs it', async () => {
    const { compute, link } = setup();
    const appliance = new compute.Appliance('math-util', '^1.0.0');
    const job = appliance.for(1, 4, 'square');
    expect(job.workSource).toBe('');
    expect(Array.from(await job.localExec())).toEqual([1, 4, 9, 16]);
    expect(job.workSource).toBe(squareSource);
    expect(job.appliance).toEqual({ versionId, function: 'square' });
    expect(appliance).toMatchObject({ id: 'a_0123456789', versionId, version: '1.2.0', description: 'squares', website: 'https://example.org' });
    expect(link.restRequests.map((request) => request.path)).toEqual([`appliances/math-util?version=${encodeURIComponent('^1.0.0')}`, `appliances/versions/${versionId}/functions/square`]);
    expect(Array.from(await appliance.do(2, 'square').localExec())).toEqual([0, 1]);
  });

  it('exec() deploys the fetched source with the appliance reference, signed', async () => {
    const { compute, link } = setup();
    const job = new compute.Appliance('math-util', '^1.0.0').do(3, 'square');
    void job.exec().catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(link.deploys).toHaveLength(1);
    const { job: spec, signature } = link.deploys[0]!;
    expect(spec).toMatchObject({ work: squareSource, appliance: { versionId, function: 'square' } });
    expect(recoverRequestSigner(SignedKind.deploy, deploySigningPayload(spec), signature)).toBe(testWallet.address);
  });

  it('an unknown function is ENOTFOUND; a source that does not match its published hash is refused', async () => {
    const { compute } = setup();
    await expect(new compute.Appliance('math-util', '^1.0.0').for(1, 2, 'cube').localExec()).rejects.toMatchObject({ code: 'ENOTFOUND' });
    const tampered = setup('(i) => -1');
    await expect(new tampered.compute.Appliance('math-util', '^1.0.0').for(1, 2, 'square').localExec()).rejects.toMatchObject({ code: 'ESCHEDULER' });
  });
});
