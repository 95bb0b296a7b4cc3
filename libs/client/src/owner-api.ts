import {
  CommuneError,
  ErrorCode,
  JobInfoSchema,
  Limits,
  OwnerJobsSchema,
  ResultsDeleteReplySchema,
  ResultsListPageSchema,
  ResultsPageSchema,
  ResultStatsPageSchema,
  SliceInfoPageSchema,
  SliceSetSchema,
  type JobInfo,
  type JobStatus,
  type ResultsPage,
  type SliceInfo,
  type SliceSet,
  type SliceStat,
} from '@commune/protocol';
import type { z } from 'zod';
import type { RequestSigner, SchedulerLink } from './connection.js';

/**
 * The owner's REST queries (protocol "Compute API: results, job queries, market"): result
 * handles' list/delete/fetch/stat, compute.status form 2, getJobInfo and getSliceInfo. Every
 * request is signed by the job owner; pages are followed to the end.
 */

/** A range object over slice numbers, inclusive: {start, end, step?}. */
export interface SliceRangeSpec {
  start: number;
  end: number;
  step?: number;
}

/** What result handle methods take: a range object or a sparse range object over slice numbers (a RangeObject or SparseRangeObject too). */
export type SliceRangeInput = SliceRangeSpec | { sparse: readonly SliceRangeSpec[] } | { ranges: readonly SliceRangeSpec[] };

function invalidRange(detail: string): never {
  throw new CommuneError(ErrorCode.EINVAL, `a slice range is {start, end, step?} or {sparse: [{start, end, step?}, ...]} over slice numbers: ${detail}`);
}

function sliceRangeOf(range: unknown): { start: number; end: number; step?: number } {
  const { start, end, step } = (range ?? {}) as { start?: unknown; end?: unknown; step?: unknown };
  const numbers = [start, end, step ?? 1].map((value) => Number(value));
  if (!numbers.every((value) => Number.isSafeInteger(value))) invalidRange(`${JSON.stringify({ start, end, step })} has a bound that is not an integer`);
  const [first, last, by] = numbers as [number, number, number];
  if (first < 0 || last < first || by < 1) invalidRange(`${JSON.stringify({ start, end, step })} is not ascending from a slice number >= 0 with a positive step`);
  return by === 1 ? { start: first, end: last } : { start: first, end: last, step: by };
}

/** A slice range argument as the wire's SliceSet; undefined means every slice. */
export function sliceSetOf(range: SliceRangeInput | undefined): SliceSet | undefined {
  if (range === undefined || range === null) return undefined;
  const parts = (range as { sparse?: unknown }).sparse ?? (range as { ranges?: unknown }).ranges;
  const ranges = Array.isArray(parts) ? parts.map(sliceRangeOf) : [sliceRangeOf(range)];
  if (ranges.length > Limits.maxSliceRangesPerRequest) invalidRange(`${ranges.length} ranges; at most ${Limits.maxSliceRangesPerRequest} per request`);
  return SliceSetSchema.parse({ sparse: ranges });
}

function query(parameters: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) if (value !== undefined) search.set(name, String(value));
  const text = search.toString();
  return text ? `?${text}` : '';
}

async function get<S extends z.ZodType>(link: SchedulerLink, signer: RequestSigner, method: 'GET' | 'DELETE', path: string, schema: S): Promise<z.infer<S>> {
  const body = await link.rest(method, path, signer);
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed answer to ${method} ${path}: ${parsed.error.message}`);
  return parsed.data;
}

const jobPath = (jobId: string) => `jobs/${encodeURIComponent(jobId)}`;
const setParameter = (set: SliceSet | undefined) => (set === undefined ? undefined : JSON.stringify(set));

/** results.list: the computed slices as a sparse range object over slice numbers, ascending. */
export async function listResults(link: SchedulerLink, signer: RequestSigner, jobId: string, set: SliceSet | undefined): Promise<{ sparse: SliceRangeSpec[] }> {
  if (set && set.sparse.length === 0) return { sparse: [] };
  const sparse: SliceRangeSpec[] = [];
  let after = -1;
  for (;;) {
    const page = await get(link, signer, 'GET', `${jobPath(jobId)}/results/list${query({ slices: setParameter(set), after, limit: Limits.maxSliceRunsPerPage })}`, ResultsListPageSchema);
    sparse.push(...page.slices.sparse);
    if (page.nextAfter === null || page.nextAfter <= after) return { sparse };
    after = page.nextAfter;
  }
}

/** results.delete: how many results the scheduler dropped. */
export async function deleteResults(link: SchedulerLink, signer: RequestSigner, jobId: string, set: SliceSet | undefined): Promise<number> {
  if (set && set.sparse.length === 0) return 0;
  const reply = await get(link, signer, 'DELETE', `${jobPath(jobId)}/results${query({ slices: setParameter(set) })}`, ResultsDeleteReplySchema);
  return reply.deleted;
}

/** results.fetch: each page of stored results in `set`, in slice order. */
export async function* resultPages(link: SchedulerLink, signer: RequestSigner, jobId: string, set: SliceSet | undefined): AsyncGenerator<ResultsPage['results']> {
  if (set && set.sparse.length === 0) return;
  let after = -1;
  for (;;) {
    const page = await get(link, signer, 'GET', `${jobPath(jobId)}/results/values${query({ slices: setParameter(set), after, limit: Limits.maxResultsPerPage })}`, ResultsPageSchema);
    yield page.results;
    if (page.nextAfter === null || page.nextAfter <= after) return;
    after = page.nextAfter;
  }
}

/** results.stat, page by page. */
export async function* statPages(link: SchedulerLink, signer: RequestSigner, jobId: string, set: SliceSet | undefined): AsyncGenerator<SliceStat[]> {
  if (set && set.sparse.length === 0) return;
  let after = -1;
  for (;;) {
    const page = await get(link, signer, 'GET', `${jobPath(jobId)}/results/stat${query({ slices: setParameter(set), after, limit: Limits.maxResultsPerPage })}`, ResultStatsPageSchema);
    yield page.stats;
    if (page.nextAfter === null || page.nextAfter <= after) return;
    after = page.nextAfter;
  }
}

/** compute.status form 2: the owner's jobs created within [from, to] (ms since the epoch), newest first. */
export async function listJobs(link: SchedulerLink, signer: RequestSigner, owner: string, from: number | undefined, to: number | undefined): Promise<JobStatus[]> {
  const reply = await get(link, signer, 'GET', `jobs${query({ owner, from, to })}`, OwnerJobsSchema);
  return reply.jobs;
}

export async function getJobInfo(link: SchedulerLink, signer: RequestSigner, jobId: string): Promise<JobInfo> {
  return get(link, signer, 'GET', `${jobPath(jobId)}/info`, JobInfoSchema);
}

/** compute.getSliceInfo: the job's status and every slice with a history, in slice order. */
export async function getSliceInfo(link: SchedulerLink, signer: RequestSigner, jobId: string): Promise<{ jobId: string; status: JobStatus; slices: SliceInfo[] }> {
  const slices: SliceInfo[] = [];
  let after = -1;
  for (;;) {
    const page = await get(link, signer, 'GET', `${jobPath(jobId)}/slices${query({ after, limit: Limits.maxSliceInfoPerPage })}`, SliceInfoPageSchema);
    slices.push(...page.slices);
    if (page.nextAfter === null || page.nextAfter <= after) return { jobId, status: page.status, slices };
    after = page.nextAfter;
  }
}
