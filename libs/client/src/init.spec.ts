import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Wallet } from 'ethers';
import { ErrorCode } from '@commune/protocol';
import { init } from './init.js';
import { jobStatus } from './test-support.js';

const codeMatching = (code: string) => expect.objectContaining({ code });
const jobId = 'j_0000000042';

/** A local HTTP server answering every GET with `jobStatus(jobId)`, counting requests. */
async function statusServer(): Promise<{ server: Server; url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = createServer((request, response) => {
    hits.push(request.url ?? '');
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify(jobStatus(jobId, { total: 7 })));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

/** The URL of a port nothing listens on (connections are refused). */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

describe('init({scheduler})', () => {
  let home: string;
  const keystore = Wallet.createRandom();
  const savedEnv = process.env.COMMUNE_SCHEDULER_URL;

  beforeEach(async () => {
    home = await mkdtemp(path.join(tmpdir(), 'commune-init-'));
  });

  afterEach(async () => {
    await rm(home, { recursive: true, force: true });
    if (savedEnv === undefined) delete process.env.COMMUNE_SCHEDULER_URL;
    else process.env.COMMUNE_SCHEDULER_URL = savedEnv;
  });

  it('takes several URLs as an array and uses the next when the first refuses the connection', async () => {
    const live = await statusServer();
    try {
      const { compute } = await init({ scheduler: [await deadUrl(), live.url], home, keystore });
      await expect(compute.status(jobId)).resolves.toMatchObject({ jobId, total: 7 });
      expect(live.hits).toEqual([`/jobs/${jobId}`]);
    } finally {
      live.server.close();
    }
  });

  it('takes COMMUNE_SCHEDULER_URL as a comma-separated list; a single URL still works', async () => {
    const live = await statusServer();
    try {
      process.env.COMMUNE_SCHEDULER_URL = `${await deadUrl()}, ${live.url}`;
      const several = await init({ home, keystore });
      expect(several.compute.for([1], (i: number) => i).scheduler.href).toBe(`${process.env.COMMUNE_SCHEDULER_URL.split(',')[0]}/`);
      await expect(several.compute.status(jobId)).resolves.toMatchObject({ jobId });
      process.env.COMMUNE_SCHEDULER_URL = live.url;
      const one = await init({ home, keystore });
      await expect(one.compute.status(jobId)).resolves.toMatchObject({ jobId });
      const given = await init(live.url);
      expect(given.compute.for([1], (i: number) => i).scheduler.href).toBe(`${live.url}/`);
      expect(live.hits).toHaveLength(2);
    } finally {
      live.server.close();
    }
  });

  it('refuses an empty entry, a non-URL and a non-http URL among several (EINVAL)', async () => {
    await expect(init({ scheduler: 'http://a:4000,,http://b:4000', home, keystore })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(init({ scheduler: ['http://a:4000', 'not a url'], home, keystore })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(init({ scheduler: ['http://a:4000', 'ws://b:4000'], home, keystore })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
    await expect(init({ scheduler: [], home, keystore })).rejects.toEqual(codeMatching(ErrorCode.EINVAL));
  });
});
