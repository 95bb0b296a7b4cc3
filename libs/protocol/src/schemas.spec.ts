import { Limits } from './limits.js';
import {
  AddressSchema, DeployRequestSchema, InputSetSchema, JobEventLimits, JobEventPageSchema, JobEventsRequestSchema, JobSpecSchema, SubscribeRequestSchema,
  TaskResultsSchema, TaskSchema, WorkerHelloSchema,
} from './schemas.js';

const owner = '0x000000000000000000000000000000000000dead';
const baseSpec = { owner, work: '(x) => x', inputSet: { kind: 'range', range: { start: 0, end: 9 } }, nonce: 'nonce-0001', issuedAt: 1, expiresAt: 2 };

describe('AddressSchema', () => {
  it('normalises an address to its checksum form', () => {
    expect(AddressSchema.parse(owner)).toBe('0x000000000000000000000000000000000000dEaD');
  });
  it('refuses a non-address', () => {
    expect(AddressSchema.safeParse('0x1234').success).toBe(false);
  });
});

describe('JobSpecSchema', () => {
  it('fills the defaults: no arguments, free offer, collated results, empty public data', () => {
    expect(JobSpecSchema.parse(baseSpec)).toMatchObject({ arguments: [], slicePaymentOffer: '0', collateResults: true, public: {}, requirements: {} });
  });
  it('refuses a negative or non-decimal offer', () => {
    expect(JobSpecSchema.safeParse({ ...baseSpec, slicePaymentOffer: '-1' }).success).toBe(false);
    expect(JobSpecSchema.safeParse({ ...baseSpec, slicePaymentOffer: '1e5' }).success).toBe(false);
  });
  it('refuses an empty work function', () => {
    expect(JobSpecSchema.safeParse({ ...baseSpec, work: '' }).success).toBe(false);
  });
});

describe('InputSetSchema', () => {
  it('keeps decimal strings of range bounds for exact arithmetic', () => {
    expect(InputSetSchema.parse({ kind: 'range', range: { start: '0.1', end: '1', step: '0.1' } })).toEqual({ kind: 'range', range: { start: '0.1', end: '1', step: '0.1' } });
  });
  it('refuses Infinity, non-numeric bounds and a zero group', () => {
    expect(InputSetSchema.safeParse({ kind: 'range', range: { start: 0, end: Infinity } }).success).toBe(false);
    expect(InputSetSchema.safeParse({ kind: 'range', range: { start: 'abc', end: 1 } }).success).toBe(false);
    expect(InputSetSchema.safeParse({ kind: 'range', range: { start: 0, end: 1, group: 0 } }).success).toBe(false);
  });
  it('refuses an unknown kind', () => {
    expect(InputSetSchema.safeParse({ kind: 'other' }).success).toBe(false);
  });
});

describe('DeployRequestSchema', () => {
  it('needs a hex signature', () => {
    expect(DeployRequestSchema.safeParse({ job: baseSpec, signature: 'nope' }).success).toBe(false);
    expect(DeployRequestSchema.safeParse({ job: baseSpec, signature: '0xabcdef' }).success).toBe(true);
  });
});

describe('TaskSchema and TaskResultsSchema', () => {
  const slice = { sliceIndex: 0, datum: 1 };
  const task = { taskId: 't_0123456789', jobId: 'j_0123456789', workHash: '0x' + 'a'.repeat(64), arguments: [], public: {}, slices: [slice], leaseDeadline: 1, progressTimeoutMs: 1, sliceTimeLimitMs: 1 };
  it('accepts a task without its work source (the worker has it cached)', () => {
    expect(TaskSchema.parse(task).work).toBeUndefined();
  });
  it(`bounds a task at maxSlicesPerTask (${Limits.maxSlicesPerTask})`, () => {
    expect(TaskSchema.safeParse({ ...task, slices: Array.from({ length: Limits.maxSlicesPerTask + 1 }, () => slice) }).success).toBe(false);
  });
  it('tells ok and error outcomes apart', () => {
    const parsed = TaskResultsSchema.parse({
      taskId: task.taskId, jobId: task.jobId,
      outcomes: [{ sliceIndex: 0, status: 'ok', value: 2, elapsedMs: 1 }, { sliceIndex: 1, status: 'error', error: { code: 'EWORKFUNCTION', message: 'x' }, elapsedMs: 1 }],
    });
    expect(parsed.outcomes[1]).toMatchObject({ status: 'error', error: { name: 'Error' } });
  });
  it('refuses a negative slice index', () => {
    expect(TaskResultsSchema.safeParse({ taskId: task.taskId, jobId: task.jobId, outcomes: [{ sliceIndex: -1, status: 'ok', value: 1, elapsedMs: 0 }] }).success).toBe(false);
  });
});

describe('WorkerHelloSchema', () => {
  it('refuses a worker without sandboxes', () => {
    expect(WorkerHelloSchema.safeParse({ workerId: 'w_01234567', sandboxes: 0 }).success).toBe(false);
  });
  it('normalises the earnings address', () => {
    expect(WorkerHelloSchema.parse({ workerId: 'w_01234567', sandboxes: 1, earnings: owner }).earnings).toBe('0x000000000000000000000000000000000000dEaD');
  });
});

// ---------------------------------------------------------------- input sets: sparse, multi-range, distribution
describe('InputSetSchema: sparse, multi-range and distribution kinds', () => {
  const distribution = { kind: 'distribution', distribution: 'normalRNG', n: 10, parameters: [100, 0.2], seed: '0123456789abcdef' };
  it('keeps each descriptor exactly as given (the client signs it, the scheduler verifies it)', () => {
    for (const descriptor of [
      { kind: 'sparse', sparse: [{ start: 1, end: 3 }, { start: '0.5', end: 2, step: '0.5', group: 2 }] },
      { kind: 'multi', ranges: [{ kind: 'range', range: { start: 1, end: 2 } }, { kind: 'sparse', sparse: [{ start: 3, end: 5 }] }, distribution] },
      distribution,
    ]) {
      expect(InputSetSchema.parse(descriptor)).toEqual(descriptor);
    }
  });
  it('refuses empty, nested or oversized range lists', () => {
    expect(InputSetSchema.safeParse({ kind: 'sparse', sparse: [] }).success).toBe(false);
    expect(InputSetSchema.safeParse({ kind: 'multi', ranges: [] }).success).toBe(false);
    expect(InputSetSchema.safeParse({ kind: 'multi', ranges: [{ kind: 'multi', ranges: [{ kind: 'range', range: { start: 1, end: 2 } }] }] }).success).toBe(false);
    expect(InputSetSchema.safeParse({ kind: 'multi', ranges: [{ kind: 'array', values: [1] }] }).success).toBe(false);
    const ranges = Array.from({ length: Limits.maxRangesPerMultiRange + 1 }, () => ({ kind: 'range', range: { start: 1, end: 1 } }));
    expect(InputSetSchema.safeParse({ kind: 'multi', ranges }).success).toBe(false);
  });
  it('refuses a distribution with an unknown name, a bad seed or a fractional size', () => {
    expect(InputSetSchema.safeParse({ ...distribution, distribution: 'poisson' }).success).toBe(false);
    expect(InputSetSchema.safeParse({ ...distribution, seed: '42' }).success).toBe(false);
    expect(InputSetSchema.safeParse({ ...distribution, n: 1.5 }).success).toBe(false);
    expect(InputSetSchema.safeParse({ ...distribution, parameters: [1] }).success).toBe(false);
  });
  it('TaskSchema.spreadDatum defaults to false', () => {
    const task = { taskId: 't_0123456789', jobId: 'j_0123456789', workHash: '0x' + 'a'.repeat(64), arguments: [], public: {}, slices: [{ sliceIndex: 0, datum: [1, 2] }], leaseDeadline: 1, progressTimeoutMs: 1, sliceTimeLimitMs: 1 };
    expect(TaskSchema.parse(task).spreadDatum).toBe(false);
    expect(TaskSchema.parse({ ...task, spreadDatum: true }).spreadDatum).toBe(true);
  });
});

describe('job event stream schemas', () => {
  const jobId = 'j_0000000042';
  const cursor = { epoch: '0123456789abcdef', seq: 7 };
  it('a subscribe takes an optional `since` cursor, bounded: hex epoch of at most maxEpochChars, a safe non-negative integer seq', () => {
    expect(SubscribeRequestSchema.parse({ jobId, since: cursor }).since).toEqual(cursor);
    expect(SubscribeRequestSchema.parse({ jobId }).since).toBeUndefined();
    for (const since of [
      { epoch: 'a'.repeat(JobEventLimits.maxEpochChars + 1), seq: 1 },
      { epoch: '', seq: 1 },
      { epoch: 'not-hex!', seq: 1 },
      { epoch: 'abc', seq: -1 },
      { epoch: 'abc', seq: 1.5 },
      { epoch: 'abc', seq: Number.MAX_SAFE_INTEGER + 2 },
      { epoch: 'abc' },
    ]) {
      expect(SubscribeRequestSchema.safeParse({ jobId, since }).success).toBe(false);
      expect(JobEventsRequestSchema.safeParse({ jobId, since }).success).toBe(false);
    }
    expect(JobEventsRequestSchema.safeParse({ jobId }).success).toBe(false); // job:events always says from where
  });
  it('a page carries at most maxEventsPerPage events, each a known job event with its payload parsed', () => {
    const event = { name: 'job:console', event: { jobId, entries: [{ sliceIndex: 0, level: 'log', message: 'hi' }], cursor } };
    const page = (events: unknown[]) => ({ cursor, gap: false, more: false, events });
    expect(JobEventPageSchema.parse(page([event])).events[0]).toEqual(event);
    expect(JobEventPageSchema.safeParse(page(Array.from({ length: JobEventLimits.maxEventsPerPage }, () => event))).success).toBe(true);
    expect(JobEventPageSchema.safeParse(page(Array.from({ length: JobEventLimits.maxEventsPerPage + 1 }, () => event))).success).toBe(false);
    expect(JobEventPageSchema.safeParse(page([{ name: 'job:unknown', event: {} }])).success).toBe(false);
    expect(JobEventPageSchema.safeParse(page([{ name: 'job:console', event: { jobId, entries: 'no' } }])).success).toBe(false);
    expect(JobEventPageSchema.safeParse({ ...page([]), cursor: null, gap: true }).success).toBe(true);
  });
});
