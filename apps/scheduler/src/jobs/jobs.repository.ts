import { Injectable } from '@nestjs/common';
import type { JobAppliance, JobPublic, JobSpec, JobStatus, ModuleTable, RunStatus, SliceProfile } from '@commune/protocol';
import { moduleTableHashOf, moduleTableOf, ModuleTableSchema } from '@commune/protocol';
import { PrismaService } from '../database/prisma.service.js';
import { unitsToDcc } from '../payments/domain/pricing.js';

/** An array input set as it is stored: its canonical JSON (what the owner's digest covers), that digest, its size and count. */
export interface StoredArrayInput {
  text: string;
  sha256: string;
  bytes: number;
  count: number;
}

/** What the scheduler keeps of a job (the parts dispatch needs). */
export interface StoredJob {
  id: string;
  owner: string;
  workHash: string;
  work: string;
  arguments: unknown[];
  inputSet: JobSpec['inputSet'];
  public: JobPublic;
  /** spec "Requirements Objects": what a worker's capabilities must meet to be given the job. */
  requirements: Record<string, unknown>;
  /** Join keys of the compute groups the job runs in; empty: the public group. */
  computeGroups: string[];
  total: number;
  status: RunStatus;
  /** job.requires(): the module table and every module source by hash; absent for a job without modules. */
  modules?: StoredModules;
}

/** A job's modules as dispatch sends them: the table (sources by hash), its hash, and the sources. */
export interface StoredModules {
  tableHash: string;
  table: ModuleTable;
  sources: Map<string, string>;
  /** Characters of all sources, for the job catalog's bound. */
  sourceChars: number;
}

interface JobRow {
  id: string;
  owner: string;
  status: string;
  total: bigint | number | string;
  computed: bigint | number | string;
  errors: number;
  failure_code: string | null;
  failure_message: string | null;
  public: unknown;
  created_at: Date;
  finished_at: Date | null;
  elapsed_ms_total: bigint | number | string;
  output_bytes_total: bigint | number | string;
  mean_input_bytes: number;
  offer_units: string;
  escrowed_slices: bigint | number | string;
  paid_units: string;
  funds_required: string | null;
  appliance: JobAppliance | null;
}

const statusColumns =
  'id, owner, status, total, computed, errors, failure_code, failure_message, public, created_at, finished_at, elapsed_ms_total, output_bytes_total, mean_input_bytes, offer_units::text, escrowed_slices, paid_units::text, funds_required::text, appliance';

export interface ResultBatchOutcome {
  inserted: number[];
  computed: number;
  total: number;
  /** True for exactly one batch: the one whose results completed the job. */
  completedJob: boolean;
}

/** Jobs, results and failures in Postgres. Hot paths are single raw statements. */
@Injectable()
export class JobsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Stores a new job with its first read token's hash and, for an array input set, its values
   * content-addressed in input_sets (kept once however many jobs deploy them; the job's input_set
   * names them by sha256). One statement; false when (owner, nonce) was used before (a replayed deploy).
   */
  async create(
    id: string, spec: JobSpec, workHash: string, total: number, signature: string, meanInputBytes = 0, appliance: JobAppliance | null = null,
    computeGroups: readonly string[] = [], readTokenHash: string | null = null, arrayInput: StoredArrayInput | null = null,
  ): Promise<boolean> {
    const modules = spec.modules ? moduleTableOf(spec.modules) : undefined;
    if (spec.modules && modules) {
      // Content-addressed: a module already stored (by an earlier job) is kept as it is.
      await this.prisma.pool.query(
        'INSERT INTO module_sources (hash, source) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT (hash) DO NOTHING',
        [modules.files.map((file) => file.hash), spec.modules.files.map((file) => file.source)],
      );
    }
    // One raw statement (deploy is on the latency path; the ORM's create costs a few ms more).
    const json = (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(value));
    const inputSet = arrayInput ? { kind: 'array', count: arrayInput.count, sha256: arrayInput.sha256 } : spec.inputSet;
    const rows = await this.prisma.pool.query(
      `WITH input AS (
         INSERT INTO input_sets (hash, values_json, count) SELECT $19, $20, $21 WHERE $19::text IS NOT NULL ON CONFLICT (hash) DO NOTHING
       ), job AS (
         INSERT INTO jobs (id, owner, work_hash, work, arguments, input_set, requirements, public, slice_payment_offer, collate_results, total, nonce,
           signature, mean_input_bytes, appliance, modules, compute_groups)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8::jsonb, $9::numeric, $10, $11::bigint, $12, $13, $14, $15::jsonb, $16::jsonb, $17::text[])
         ON CONFLICT (owner, nonce) DO NOTHING RETURNING id
       ), token AS (
         INSERT INTO job_read_tokens (token_hash, job_id) SELECT $18, id FROM job WHERE $18::text IS NOT NULL
       )
       SELECT id FROM job`,
      [
        id, spec.owner, workHash, spec.work, json(spec.arguments), json(inputSet), json(spec.requirements), json(spec.public), spec.slicePaymentOffer,
        spec.collateResults, total, spec.nonce, signature, meanInputBytes, json(appliance), json(modules), [...computeGroups], readTokenHash,
        arrayInput?.sha256 ?? null, arrayInput?.text ?? null, arrayInput?.count ?? null,
      ],
    );
    return (rows.rowCount ?? 0) > 0;
  }

  async find(id: string): Promise<StoredJob | null> {
    // Raw, as create(): the first task of every job waits for this read.
    const rows = await this.prisma.pool.query<{
      id: string; owner: string; work_hash: string; work: string; arguments: unknown[]; input_set: StoredInputSet; public: JobPublic | null;
      requirements: Record<string, unknown> | null; total: string; status: string; compute_groups: string[] | null; modules: unknown; input_values: string | null;
    }>(
      `SELECT j.id, j.owner, j.work_hash, j.work, j.arguments, j.input_set, j.public, j.requirements, j.total, j.status, j.compute_groups, j.modules,
         s.values_json AS input_values
       FROM jobs j LEFT JOIN input_sets s ON s.hash = j.input_set->>'sha256' WHERE j.id = $1`,
      [id],
    );
    const job = rows.rows[0];
    if (!job) return null;
    const modules = job.modules === null ? undefined : await this.moduleSources(job.id, ModuleTableSchema.parse(job.modules));
    return {
      id: job.id,
      owner: job.owner,
      workHash: job.work_hash,
      work: job.work,
      arguments: job.arguments,
      inputSet: inputSetOf(job.id, job.input_set, job.input_values),
      public: job.public ?? {},
      requirements: job.requirements ?? {},
      total: Number(job.total),
      status: job.status as RunStatus,
      computeGroups: job.compute_groups ?? [],
      ...(modules ? { modules } : {}),
    };
  }

  /** The sources of a module table (content-addressed in module_sources). */
  private async moduleSources(jobId: string, table: ModuleTable): Promise<StoredModules> {
    const hashes = [...new Set(table.files.map((file) => file.hash))];
    const rows = await this.prisma.pool.query<{ hash: string; source: string }>('SELECT hash, source FROM module_sources WHERE hash = ANY($1::text[])', [hashes]);
    const sources = new Map(rows.rows.map((row) => [row.hash, row.source]));
    const missing = hashes.filter((hash) => !sources.has(hash));
    if (missing.length > 0) throw new Error(`job ${jobId}: ${missing.length} module sources are missing from module_sources (${missing[0]})`);
    let sourceChars = 0;
    for (const source of sources.values()) sourceChars += source.length;
    return { tableHash: moduleTableHashOf(table), table, sources, sourceChars };
  }

  async findByNonce(owner: string, nonce: string): Promise<{ id: string; total: number; signature: string } | null> {
    const job = await this.prisma.job.findUnique({ where: { owner_nonce: { owner, nonce } }, select: { id: true, total: true, signature: true } });
    return job ? { id: job.id, total: Number(job.total), signature: job.signature } : null;
  }

  async status(id: string, distributed: number | null): Promise<JobStatus | null> {
    const rows = await this.prisma.pool.query<JobRow>(
      `SELECT ${statusColumns} FROM jobs WHERE id = $1`,
      [id],
    );
    const row = rows.rows[0];
    return row ? toStatus(row, distributed) : null;
  }

  /** Running jobs, for the reconciler. */
  /** Running jobs created at least `minAgeMs` ago (younger ones may still be in the middle of their deploy). */
  async running(limit: number, minAgeMs: number): Promise<Array<{ id: string; total: number; computed: number }>> {
    const rows = await this.prisma.pool.query<{ id: string; total: string; computed: string }>(
      "SELECT id, total, computed FROM jobs WHERE status = 'running' AND created_at < now() - make_interval(secs => $2::double precision / 1000) ORDER BY created_at LIMIT $1",
      [limit, minAgeMs],
    );
    return rows.rows.map((row) => ({ id: row.id, total: Number(row.total), computed: Number(row.computed) }));
  }

  /**
   * Stores a batch of results in one statement. The primary key (job, slice) makes acceptance
   * exactly-once: a slice that already has a result is skipped and not counted.
   */
  async insertResults(
    jobId: string,
    workerId: string,
    rows: Array<{ sliceIndex: number; value: string | null; elapsedMs: number; payment?: string | null }>,
    payee: string | null = null,
  ): Promise<ResultBatchOutcome> {
    const result = await this.prisma.pool.query<{ computed: string; total: string; inserted: string[] | null }>(
      `WITH ins AS (
         INSERT INTO slice_results (job_id, slice_index, value, worker_id, elapsed_ms, payee, payment)
         SELECT $1, t.s, t.v, $2, t.e, $6, t.p FROM unnest($3::bigint[], $4::text[], $5::int[], $7::numeric[]) AS t(s, v, e, p)
         WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND status IN ('running', 'paused'))
         ON CONFLICT DO NOTHING
         RETURNING slice_index, elapsed_ms, coalesce(octet_length(value), 0) AS bytes, coalesce(payment, 0) AS payment
       ), counted AS (
         SELECT count(*) AS n, array_agg(slice_index) AS inserted, coalesce(sum(elapsed_ms), 0) AS elapsed, coalesce(sum(bytes), 0) AS bytes,
           coalesce(sum(payment), 0) AS paid FROM ins
       )
       UPDATE jobs SET computed = computed + counted.n, elapsed_ms_total = elapsed_ms_total + counted.elapsed,
         output_bytes_total = output_bytes_total + counted.bytes, paid_units = paid_units + counted.paid
       FROM counted WHERE id = $1
       RETURNING computed, total, counted.inserted`,
      [
        jobId, workerId, rows.map((row) => row.sliceIndex), rows.map((row) => row.value),
        rows.map((row) => Math.min(2 ** 31 - 1, Math.round(row.elapsedMs))), payee, rows.map((row) => row.payment ?? null),
      ],
    );
    const row = result.rows[0];
    if (!row) return { inserted: [], computed: 0, total: 0, completedJob: false };
    const inserted = (row.inserted ?? []).map(Number);
    const computed = Number(row.computed);
    const total = Number(row.total);
    return { inserted, computed, total, completedJob: inserted.length > 0 && computed === total };
  }

  /** Records failed attempts; returns the job's error count after them. */
  async recordFailures(jobId: string, workerId: string, failures: Array<{ sliceIndex: number; code: string; message: string }>): Promise<number> {
    const result = await this.prisma.pool.query<{ errors: number }>(
      `WITH ins AS (
         INSERT INTO slice_failures (job_id, slice_index, worker_id, code, message)
         SELECT $1, t.s, $2, t.c, t.m FROM unnest($3::bigint[], $4::text[], $5::text[]) AS t(s, c, m)
         RETURNING 1
       )
       UPDATE jobs SET errors = errors + (SELECT count(*) FROM ins) WHERE id = $1 RETURNING errors`,
      [jobId, workerId, failures.map((f) => f.sliceIndex), failures.map((f) => f.code), failures.map((f) => f.message.slice(0, 4000))],
    );
    return result.rows[0]?.errors ?? 0;
  }

  /** Moves a running job to an end state; null when it was not running (someone else ended it). */
  async end(jobId: string, status: Exclude<RunStatus, 'running'>, failure: { code: string; message: string } | null): Promise<JobStatus | null> {
    const rows = await this.prisma.pool.query<JobRow>(
      `UPDATE jobs SET status = $2, failure_code = $3, failure_message = $4, finished_at = now()
       WHERE id = $1 AND status IN ('running', 'paused')
       RETURNING ${statusColumns}`,
      [jobId, status, failure?.code ?? null, failure?.message ?? null],
    );
    const row = rows.rows[0];
    return row ? toStatus(row, Number(row.total)) : null;
  }

  async resultsPage(jobId: string, after: number, limit: number): Promise<Array<{ sliceIndex: number; value: string | null }>> {
    const rows = await this.prisma.pool.query<{ slice_index: string; value: string | null }>(
      'SELECT slice_index, value FROM slice_results WHERE job_id = $1 AND slice_index > $2 AND deleted_at IS NULL ORDER BY slice_index LIMIT $3',
      [jobId, after, limit],
    );
    return rows.rows.map((row) => ({ sliceIndex: Number(row.slice_index), value: row.value }));
  }

  /**
   * The stored results of `slices`, in that order, as long as the bytes before each stay under
   * `budgetBytes` (so the row that crosses the budget is the last one; a replay page stays about
   * one message's size). `stored` is false for a slice without a result (deleted by results.delete).
   */
  async resultValuesWithin(jobId: string, slices: number[], budgetBytes: number): Promise<Array<{ sliceIndex: number; value: string | null; stored: boolean }>> {
    if (slices.length === 0) return [];
    const rows = await this.prisma.pool.query<{ slice_index: string; value: string | null; stored: boolean }>(
      `SELECT slice_index, value, stored FROM (
         SELECT w.ord, w.slice_index, r.value, r.slice_index IS NOT NULL AS stored, coalesce(octet_length(r.value), 0) AS bytes,
                sum(coalesce(octet_length(r.value), 0)) OVER (ORDER BY w.ord) AS running
         FROM unnest($2::bigint[]) WITH ORDINALITY AS w(slice_index, ord)
         LEFT JOIN slice_results r ON r.job_id = $1 AND r.slice_index = w.slice_index AND r.deleted_at IS NULL
       ) wanted WHERE running - bytes < $3 ORDER BY ord`,
      [jobId, slices, budgetBytes],
    );
    return rows.rows.map((row) => ({ sliceIndex: Number(row.slice_index), value: row.value, stored: row.stored }));
  }

  /** Slices below `upTo` with no result (for the reconciler, bounded by `limit`). */
  async missingSlices(jobId: string, upTo: number, limit: number): Promise<number[]> {
    const rows = await this.prisma.pool.query<{ s: string }>(
      `SELECT s FROM generate_series(0::bigint, $2::bigint - 1) AS s
       WHERE NOT EXISTS (SELECT 1 FROM slice_results r WHERE r.job_id = $1 AND r.slice_index = s) LIMIT $3`,
      [jobId, upTo, limit],
    );
    return rows.rows.map((row) => Number(row.s));
  }

  // ---------------------------------------------------------------- Compute API: pause/resume, owner queries

  /** Moves a job from one run status to another (pause, resume); null when it was not in `from`. */
  async changeRunStatus(jobId: string, from: RunStatus, to: RunStatus): Promise<JobStatus | null> {
    const rows = await this.prisma.pool.query<JobRow>(`UPDATE jobs SET status = $3 WHERE id = $1 AND status = $2 RETURNING ${statusColumns}`, [jobId, from, to]);
    const row = rows.rows[0];
    return row ? toStatus(row, null) : null;
  }

  /** An owner's jobs created within [from, to], newest first (index jobs(owner, created_at)). */
  async listByOwner(owner: string, from: Date | null, to: Date | null, limit: number): Promise<JobStatus[]> {
    const rows = await this.prisma.pool.query<JobRow>(
      `SELECT ${statusColumns} FROM jobs WHERE owner = $1 AND ($2::timestamptz IS NULL OR created_at >= $2) AND ($3::timestamptz IS NULL OR created_at <= $3)
       ORDER BY created_at DESC LIMIT $4`,
      [owner, from, to, limit],
    );
    return rows.rows.map((row) => toStatus(row, null));
  }

  /** What was deployed (compute.getJobInfo), without its status. */
  async deployed(jobId: string): Promise<
    | (Pick<JobSpec, 'work' | 'arguments' | 'inputSet' | 'requirements' | 'public' | 'slicePaymentOffer' | 'collateResults'> & { signature: string; modules?: ModuleTable; computeGroups?: string[] })
    | null
  > {
    const job = await this.prisma.job.findUnique({
      where: { id: jobId },
      select: { work: true, arguments: true, inputSet: true, requirements: true, public: true, slicePaymentOffer: true, collateResults: true, signature: true, modules: true, computeGroups: true },
    });
    if (!job) return null;
    const digest = (job.inputSet as { sha256?: unknown } | null)?.sha256;
    const values = typeof digest === 'string' ? await this.prisma.inputSet.findUnique({ where: { hash: digest }, select: { valuesJson: true } }) : null;
    return {
      work: job.work,
      arguments: job.arguments as unknown[],
      inputSet: inputSetOf(jobId, job.inputSet as StoredInputSet, values?.valuesJson ?? null),
      requirements: (job.requirements ?? {}) as Record<string, unknown>,
      public: (job.public ?? {}) as JobPublic,
      slicePaymentOffer: job.slicePaymentOffer.toFixed(),
      collateResults: job.collateResults,
      signature: job.signature,
      ...(job.modules === null ? {} : { modules: ModuleTableSchema.parse(job.modules) }),
      ...((job.computeGroups ?? []).length > 0 ? { computeGroups: job.computeGroups } : {}),
    };
  }
}

/** jobs.input_set as stored: a descriptor, or an array input set by its digest (values in input_sets). */
type StoredInputSet = JobSpec['inputSet'] | { kind: 'array'; count: number; sha256: string };

/** The job's input set descriptor, an array's values read back from input_sets. */
function inputSetOf(jobId: string, stored: StoredInputSet, valuesJson: string | null): JobSpec['inputSet'] {
  if (stored.kind !== 'array' || !('sha256' in stored)) return stored as JobSpec['inputSet'];
  if (valuesJson === null) throw new Error(`job ${jobId}: its input set ${stored.sha256} is missing from input_sets`);
  return { kind: 'array', values: JSON.parse(valuesJson) as unknown[] };
}

function toStatus(row: JobRow, distributed: number | null): JobStatus {
  const total = Number(row.total);
  const computed = Number(row.computed);
  return {
    jobId: row.id,
    owner: row.owner,
    runStatus: row.status as RunStatus,
    total,
    distributed: Math.min(total, Math.max(distributed ?? 0, computed)),
    computed,
    errors: row.errors,
    failure: row.failure_code
      ? { code: row.failure_code, message: row.failure_message ?? '', ...(row.funds_required ? { fundsRequired: row.funds_required } : {}) }
      : null,
    payment: row.offer_units && row.offer_units !== '0'
      ? { offerPerSlice: unitsToDcc(row.offer_units), escrowedSlices: Number(row.escrowed_slices), paid: row.paid_units }
      : null,
    public: (row.public ?? {}) as JobPublic,
    createdAt: row.created_at.toISOString(),
    finishedAt: row.finished_at ? row.finished_at.toISOString() : null,
    meanSliceProfile: computed > 0 ? meanSliceProfileOf(row, computed) : null,
    ...(row.appliance ? { appliance: row.appliance } : {}),
  };
}

const msPerHour = 3_600_000;
const bytesPerMByte = 1_000_000;

/** spec meanSliceProfile from the job's sums: CPU is sandbox wall time (no GPU is measured yet). */
function meanSliceProfileOf(row: JobRow, computed: number): SliceProfile {
  return {
    cpuHours: Number(row.elapsed_ms_total) / computed / msPerHour,
    gpuHours: 0,
    inputMBytes: Number(row.mean_input_bytes) / bytesPerMByte,
    outputMBytes: Number(row.output_bytes_total) / computed / bytesPerMByte,
  };
}
