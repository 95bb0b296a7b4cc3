import { JobCatalog } from './job-catalog.js';
import type { JobsRepository, StoredJob } from '../jobs/jobs.repository.js';

/** A repository double: the catalog's caching is what is under test, not Postgres. */
function repositoryOf(jobs: Record<string, Partial<StoredJob>>) {
  const loads: string[] = [];
  const repository = {
    async find(id: string): Promise<StoredJob | null> {
      loads.push(id);
      const job = jobs[id];
      if (!job) return null;
      return { id, owner: '0x0', workHash: '0x', work: '(x) => x', arguments: [], inputSet: { kind: 'range', range: { start: 0, end: 9 } }, public: {}, requirements: {}, total: 10, status: 'running', ...job } as StoredJob;
    },
  } as unknown as JobsRepository;
  return { repository, loads };
}

describe(JobCatalog.name, () => {
  it('loads a job once and computes slice data from its input set', async () => {
    const { repository, loads } = repositoryOf({ j_a: {} });
    const catalog = new JobCatalog(repository);
    const job = await catalog.get('j_a');
    await catalog.get('j_a');
    expect(job?.input.sliceDatum(3)).toBe(3);
    expect(loads).toEqual(['j_a']);
  });
  it('returns null for an unknown job', async () => {
    const { repository } = repositoryOf({});
    expect(await new JobCatalog(repository).get('j_missing')).toBeNull();
  });
  it('does not remember an unknown job as gone: a later lookup finds it once stored', async () => {
    const jobs: Record<string, Partial<StoredJob>> = {};
    const { repository, loads } = repositoryOf(jobs);
    const catalog = new JobCatalog(repository);
    expect(await catalog.get('j_late')).toBeNull();
    jobs.j_late = {};
    expect((await catalog.get('j_late'))?.id).toBe('j_late');
    expect(loads).toEqual(['j_late', 'j_late']);
  });
  it('evicts least recently used jobs beyond maxCachedBytes', async () => {
    const big = 'x'.repeat(JobCatalog.maxCachedBytes / 2 + 1);
    const { repository, loads } = repositoryOf({ j_1: { inputSet: { kind: 'array', values: [big] } }, j_2: { inputSet: { kind: 'array', values: [big] } } });
    const catalog = new JobCatalog(repository);
    await catalog.get('j_1');
    await catalog.get('j_2');
    await catalog.get('j_2');
    await catalog.get('j_1');
    expect(loads).toEqual(['j_1', 'j_2', 'j_1']);
  });
});
