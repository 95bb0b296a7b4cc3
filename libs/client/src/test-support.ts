/**
 * Test doubles shared by this package's unit tests: a scheduler link that records what the SDK
 * sends and lets a test play the scheduler's part, and a socket for SchedulerConnection.
 * Not exported from the package entry.
 */
import { Wallet } from 'ethers';
import { CommuneError, type DeployRequest, type JobActionRequest, type JobStatus, type ResultsPage, type SliceResult } from '@commune/protocol';
import { inputSetFromDescriptor } from '@commune/ranges';
import type { ClientSocket, DeployAccepted, JobEventSink, RequestSigner, SchedulerLink } from './connection.js';
import type { JobContext } from './job.js';

/** A fixed key, so signatures are reproducible. */
export const testWallet = new Wallet('0x' + '11'.repeat(32));

export function jobStatus(jobId: string, overrides: Partial<JobStatus> = {}): JobStatus {
  return {
    jobId,
    owner: testWallet.address,
    runStatus: 'running',
    total: 0,
    distributed: 0,
    computed: 0,
    errors: 0,
    failure: null,
    public: {},
    createdAt: new Date(0).toISOString(),
    finishedAt: null,
    ...overrides,
  };
}

export class FakeLink implements SchedulerLink {
  readonly url = new URL('http://scheduler.test/');
  readonly deploys: DeployRequest[] = [];
  readonly actions: JobActionRequest[] = [];
  readonly pageRequests: Array<{ after: number; limit: number }> = [];
  readonly sinks = new Map<string, JobEventSink>();
  readonly detached: string[] = [];
  /** attach()/follow() options per job: whether its results are pushed. */
  readonly resultsWanted = new Map<string, boolean>();
  /** follow() calls (compute.resume) and the status each answers with. */
  readonly follows: string[] = [];
  followReply: (jobId: string) => JobStatus = (jobId) => jobStatus(jobId);
  /** REST requests (rest()), with the address that signed them (undefined: unsigned). */
  readonly restRequests: Array<{ method: string; path: string; signer: string | undefined }> = [];
  /** Answers rest(); a thrown error is the scheduler's error reply. */
  restReply: (method: string, path: string) => unknown = (method, path) => {
    const values = this.#valuesPage(method, path);
    if (values) return values;
    throw new CommuneError('ENOTFOUND', `no answer set for ${method} ${path}`);
  };

  /** GET jobs/:id/results/values (results.fetch) served from `stored`, as the scheduler would. */
  #valuesPage(method: string, path: string): ResultsPage | undefined {
    const match = /^jobs\/([^/?]+)\/results\/values(?:\?(.*))?$/.exec(path);
    if (method !== 'GET' || !match) return undefined;
    const query = new URLSearchParams(match[2] ?? '');
    const set = query.get('slices') ? (JSON.parse(query.get('slices')!) as { sparse: Array<{ start: number; end: number; step?: number }> }) : undefined;
    const after = Number(query.get('after') ?? -1);
    const limit = Math.min(Number(query.get('limit') ?? 1000), this.pageLimit);
    const inSet = (i: number) => !set || set.sparse.some((r) => i >= r.start && i <= r.end && (i - r.start) % (r.step ?? 1) === 0);
    const results = this.stored.filter((result) => result.sliceIndex > after && inSet(result.sliceIndex)).slice(0, limit);
    return { jobId: decodeURIComponent(match[1]!), results, nextAfter: results.length === limit ? results.at(-1)!.sliceIndex : null };
  }
  /** Results the "scheduler" holds, served by getResultsPage. */
  stored: SliceResult[] = [];
  pageLimit = 2;
  /** Undefined: accept with the slice count of the deployed input set. */
  deployReply: DeployAccepted | CommuneError | undefined;
  actionReply: (request: JobActionRequest) => JobStatus = (request) => jobStatus(request.request.jobId, { runStatus: 'cancelled' });
  #attached: Array<(sink: JobEventSink) => void> = [];

  async deploy(request: DeployRequest): Promise<DeployAccepted> {
    this.deploys.push(request);
    if (this.deployReply instanceof Error) throw this.deployReply;
    return this.deployReply ?? { jobId: 'j_0000000001', total: inputSetFromDescriptor(request.job.inputSet).sliceCount, receipt: 'receipt-1' };
  }

  attach(jobId: string, sink: JobEventSink, options: { results?: boolean } = {}): void {
    this.sinks.set(jobId, sink);
    this.resultsWanted.set(jobId, options.results !== false);
    for (const waiter of this.#attached.splice(0)) waiter(sink);
  }

  async follow(jobId: string, sink: JobEventSink, results: boolean): Promise<JobStatus> {
    this.follows.push(jobId);
    this.sinks.set(jobId, sink);
    this.resultsWanted.set(jobId, results);
    for (const waiter of this.#attached.splice(0)) waiter(sink);
    return this.followReply(jobId);
  }

  wantResults(jobId: string): void {
    if (this.sinks.has(jobId)) this.resultsWanted.set(jobId, true);
  }

  async rest(method: 'GET' | 'DELETE' | 'POST', path: string, signer?: RequestSigner): Promise<unknown> {
    this.restRequests.push({ method, path, signer: signer ? await signer.getAddress() : undefined });
    return this.restReply(method, path);
  }

  detach(jobId: string): void {
    this.sinks.delete(jobId);
    this.detached.push(jobId);
  }

  async jobAction(request: JobActionRequest): Promise<JobStatus> {
    this.actions.push(request);
    return this.actionReply(request);
  }

  /** Answers getStatus (GET /jobs/:id). */
  statusReply: (jobId: string) => JobStatus = (jobId) => jobStatus(jobId);

  async getStatus(jobId: string): Promise<JobStatus> {
    return this.statusReply(jobId);
  }

  async getResultsPage(jobId: string, after: number, limit: number): Promise<ResultsPage> {
    this.pageRequests.push({ after, limit });
    const results = this.stored.filter((result) => result.sliceIndex > after).slice(0, Math.min(limit, this.pageLimit));
    const more = this.stored.some((result) => result.sliceIndex > (results.at(-1)?.sliceIndex ?? Infinity));
    return { jobId, results, nextAfter: more ? results.at(-1)!.sliceIndex : null };
  }

  /** Resolves with the sink of the next job to attach (bounded wait). */
  nextAttach(timeoutMs = 2_000): Promise<JobEventSink> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no job attached within ${timeoutMs} ms`)), timeoutMs);
      this.#attached.push((sink) => {
        clearTimeout(timer);
        resolve(sink);
      });
    });
  }
}

export function contextFor(link: SchedulerLink): JobContext {
  return { scheduler: link.url, link: () => link, signer: async () => testWallet };
}

/** A stand-in for a socket.io client socket: records what is sent, lets the test push events. */
export class FakeSocket {
  connected = true;
  disconnected = false;
  readonly sent: Array<{ name: string; payload: unknown }> = [];
  readonly handlers = new Map<string, Array<(payload: unknown) => void>>();
  /** Answers acknowledged emits (deploy, job:action, subscribe). */
  answer: (name: string, payload: unknown) => unknown = () => ({ ok: false, code: 'EINVAL', message: 'no answer set' });

  on(name: string, handler: (payload: unknown) => void): this {
    this.handlers.set(name, [...(this.handlers.get(name) ?? []), handler]);
    return this;
  }

  emit(name: string, payload: unknown): this {
    this.sent.push({ name, payload });
    return this;
  }

  timeout(): { emitWithAck(name: string, payload: unknown): Promise<unknown> } {
    return {
      emitWithAck: async (name, payload) => {
        this.sent.push({ name, payload });
        return this.answer(name, payload);
      },
    };
  }

  connect(): this {
    this.connected = true;
    return this;
  }

  disconnect(): this {
    this.connected = false;
    this.disconnected = true;
    return this;
  }

  /** Delivers an event from the "scheduler". */
  receive(name: string, payload?: unknown): void {
    for (const handler of this.handlers.get(name) ?? []) handler(payload);
  }

  asClientSocket(): ClientSocket {
    return this as unknown as ClientSocket;
  }
}

/** Waits (bounded) until `condition` holds, saying what it waited for when it gives up. */
export async function waitFor(what: string, condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
