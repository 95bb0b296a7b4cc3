import {
  JobActionSchema, JobStatusSchema, OwnerJobsQuerySchema, OwnerRequestSchema, SliceErrorSchema, SliceSetQuerySchema, SubscribeRequestSchema,
} from './schemas.js';

const owner = '0x000000000000000000000000000000000000dead';

describe('SliceSetQuerySchema', () => {
  it('parses a JSON slice set and pages', () => {
    const slices = JSON.stringify({ sparse: [{ start: 0, end: 9, step: 2 }, { start: 20, end: 20 }] });
    expect(SliceSetQuerySchema.parse({ slices, after: '4', limit: '10' })).toEqual({ slices: { sparse: [{ start: 0, end: 9, step: 2 }, { start: 20, end: 20 }] }, after: 4, limit: 10 });
    expect(SliceSetQuerySchema.parse({})).toEqual({ slices: undefined, after: -1, limit: 1000 });
  });
  it('refuses malformed JSON, descending ranges, negative slices and too many ranges', () => {
    for (const slices of ['{', JSON.stringify({ sparse: [{ start: 5, end: 1 }] }), JSON.stringify({ sparse: [{ start: -1, end: 1 }] }), JSON.stringify({ sparse: Array(257).fill({ start: 0, end: 0 }) })]) {
      expect(SliceSetQuerySchema.safeParse({ slices }).success).toBe(false);
    }
  });
});

describe('owner requests and job actions', () => {
  it('normalise the owner of a signed request and of a job list query', () => {
    expect(OwnerRequestSchema.parse({ method: 'GET', path: '/jobs', owner, nonce: 'n_12345678', expiresAt: 1 }).owner).toBe('0x000000000000000000000000000000000000dEaD');
    expect(OwnerJobsQuerySchema.parse({ owner, from: '5' })).toMatchObject({ from: 5, limit: 500 });
  });
  it('take pause and resume besides cancel', () => {
    for (const action of ['cancel', 'pause', 'resume']) expect(JobActionSchema.safeParse({ action, jobId: 'j_0000000001', nonce: 'n_12345678', expiresAt: 1 }).success).toBe(true);
  });
  it('subscribe with or without results', () => {
    expect(SubscribeRequestSchema.parse({ jobId: 'j_0000000001', results: false })).toEqual({ jobId: 'j_0000000001', results: false });
  });
});

describe('job status and slice errors', () => {
  const status = {
    jobId: 'j_0000000001', owner, runStatus: 'paused', total: 1, distributed: 0, computed: 0, errors: 0, failure: null, public: {},
    createdAt: 'x', finishedAt: null,
  };
  it('keep the paused run status and the mean slice profile', () => {
    const profile = { cpuHours: 1, gpuHours: 0, inputMBytes: 0.5, outputMBytes: 0.25 };
    expect(JobStatusSchema.parse({ ...status, meanSliceProfile: profile })).toMatchObject({ runStatus: 'paused', meanSliceProfile: profile });
    expect(JobStatusSchema.parse(status).meanSliceProfile).toBeUndefined();
  });
  it('keep the progress reports of an ENOPROGRESS slice error', () => {
    const progress = { elapsedMs: 10, last: { timestamp: 1, progress: null, value: null, throttledReports: 0 }, lastUpdate: null };
    expect(SliceErrorSchema.parse({ code: 'ENOPROGRESS', message: 'm', progress })).toEqual({ code: 'ENOPROGRESS', name: 'Error', message: 'm', progress });
    expect(SliceErrorSchema.safeParse({ code: 'ENOPROGRESS', message: 'm', progress: { ...progress, last: { ...progress.last, progress: 2 } } }).success).toBe(false);
  });
});
