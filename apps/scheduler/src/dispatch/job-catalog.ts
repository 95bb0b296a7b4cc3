import { Injectable } from '@nestjs/common';
import { inputSetFromDescriptor, type InputSet } from '@commune/ranges';
import { JobsRepository, type StoredJob } from '../jobs/jobs.repository.js';

export interface DispatchableJob extends StoredJob {
  input: InputSet;
}

/**
 * Jobs this replica is dispatching, cached: building a task needs the work source, arguments and
 * the input set (whose datum(i) is O(1) for ranges). An LRU bounded by count and by the bytes of
 * the cached work, arguments and array input sets, so memory stays flat however many jobs run.
 */
@Injectable()
export class JobCatalog {
  private readonly cache = new Map<string, Promise<DispatchableJob | null>>();
  private readonly sizes = new Map<string, number>();
  private cachedBytes = 0;
  static readonly maxCachedJobs = 256;
  static readonly maxCachedBytes = 64 * 1024 * 1024;

  constructor(private readonly jobs: JobsRepository) {}

  get(jobId: string): Promise<DispatchableJob | null> {
    const cached = this.cache.get(jobId);
    if (cached) {
      this.cache.delete(jobId);
      this.cache.set(jobId, cached);
      return cached;
    }
    const loading = this.jobs.find(jobId).then((job) => {
      if (!job) {
        // Not cached: an unknown id is asked about again next time rather than remembered as gone.
        if (this.cache.get(jobId) === loading) this.cache.delete(jobId);
        return null;
      }
      // Plain range descriptors are a few bytes; arrays and sparse lists can be large.
      const bytes = job.work.length + JSON.stringify(job.arguments).length + (job.inputSet.kind === 'range' ? 0 : JSON.stringify(job.inputSet).length) + (job.modules?.sourceChars ?? 0);
      if (this.cache.get(jobId) === loading) {
        this.sizes.set(jobId, bytes);
        this.cachedBytes += bytes;
        this.evict(jobId);
      }
      return { ...job, input: inputSetFromDescriptor(job.inputSet) };
    });
    loading.catch(() => this.forget(jobId));
    this.cache.set(jobId, loading);
    this.evict(jobId);
    return loading;
  }

  forget(jobId: string): void {
    this.cache.delete(jobId);
    this.cachedBytes -= this.sizes.get(jobId) ?? 0;
    this.sizes.delete(jobId);
  }

  /** Drops least recently used jobs (never `keep`) until both bounds hold. */
  private evict(keep: string): void {
    for (const jobId of this.cache.keys()) {
      if (this.cache.size <= JobCatalog.maxCachedJobs && this.cachedBytes <= JobCatalog.maxCachedBytes) return;
      if (jobId !== keep) this.forget(jobId);
    }
  }
}
