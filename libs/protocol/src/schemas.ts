import { z } from 'zod';
import { getAddress } from 'ethers';
import { Limits } from './limits.js';
import { ComputeGroupCredentialSchema, ComputeGroupLimits } from './compute-group-credentials.js';
import { ApplianceJobRefSchema, JobApplianceSchema } from './appliance-refs.js';
import { StateSnapshotSchema, StateTextSchema } from './shared-state.js';

// ---------------------------------------------------------------- primitives

/**
 * An Ethereum address, normalised to its checksummed form. One getAddress per value (it
 * validates, checksum included, and normalises at once; ethers' isAddress is that same call):
 * the same outcome and issue as checking with isAddress, then transforming with getAddress.
 */
export const AddressSchema = z.string().transform((text, ctx) => {
  try {
    return getAddress(text);
  } catch {
    ctx.addIssue({ code: 'custom', path: [], message: 'not an Ethereum address', input: text });
    return z.NEVER;
  }
});
export type Address = z.infer<typeof AddressSchema>;

/** A non-negative integer amount in the smallest unit, as a decimal string. */
export const AmountSchema = z.union([z.string().regex(/^\d+$/), z.number().int().nonnegative()]).transform((v) => String(v));

export const JobIdSchema = z.string().regex(/^j_[0-9a-z]{10,40}$/, 'not a job id');
export const TaskIdSchema = z.string().regex(/^t_[0-9a-z]{10,40}$/, 'not a task id');
export const SliceIndexSchema = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
export const HashSchema = z.string().regex(/^0x[0-9a-f]{64}$/);

/** A range bound: a finite number or a decimal string (kept exact by the ranges library). */
export const RangeNumberSchema = z.union([
  z.number().finite(),
  z.string().regex(/^-?\d+(\.\d+)?(e[-+]?\d+)?$/i, 'not a decimal number'),
]);

// ---------------------------------------------------------------- input sets

/** spec "Range Objects": start, end, optional step, optional group. */
export const RangeObjectSchema = z.object({
  start: RangeNumberSchema,
  end: RangeNumberSchema,
  step: RangeNumberSchema.optional(),
  group: z.number().int().positive().optional(),
});
export type RangeObjectDescriptor = z.infer<typeof RangeObjectSchema>;

// ---------------------------------------------------------------- input sets: sparse, multi-range, distribution
// The input-set kinds that stay lazy on the scheduler besides plain ranges (libs/ranges computes
// their datum(i) from the descriptor). No defaults or transforms here: the client signs the parsed
// spec and the scheduler verifies it, so parsing must not change a descriptor.

/** spec "Sparse Range Objects": the slices of each range object, one range after another. */
export const SparseInputSetSchema = z.object({
  kind: z.literal('sparse'),
  sparse: z.array(RangeObjectSchema).min(1).max(Limits.maxRangesPerSparseRange),
});
export type SparseInputSetDescriptor = z.infer<typeof SparseInputSetSchema>;

/** spec "Distribution Objects": the creators of the stats module's `set` export. */
export const DistributionNameSchema = z.enum(['normalRNG', 'random', 'randomInt']);
export type DistributionName = z.infer<typeof DistributionNameSchema>;

/**
 * spec "Distribution Objects": n numbers drawn from a distribution. `parameters` are the creator's
 * arguments after n (normalRNG: mean, standard deviation; random and randomInt: min, max). Element i
 * is a pure function of (seed, i), so the scheduler computes any element in O(1) and a job is
 * reproducible. The seed is 64 bits as 16 lowercase hex digits.
 */
export const DistributionInputSetSchema = z.object({
  kind: z.literal('distribution'),
  distribution: DistributionNameSchema,
  n: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  parameters: z.tuple([z.number().finite(), z.number().finite()]),
  seed: z.string().regex(/^[0-9a-f]{16}$/, 'not a 64-bit seed in 16 hex digits'),
});
export type DistributionInputSetDescriptor = z.infer<typeof DistributionInputSetSchema>;

/** One dimension of a multi-range object: a range, a sparse range or a distribution (never an array or another multi-range). */
export const MultiRangeDimensionSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('range'), range: RangeObjectSchema }),
  SparseInputSetSchema,
  DistributionInputSetSchema,
]);
export type MultiRangeDimensionDescriptor = z.infer<typeof MultiRangeDimensionSchema>;

/**
 * spec compute.for form 3, {ranges: [range, range, ...]}: the cartesian product of its ranges, the
 * leftmost range being the outermost loop. Slice i's datum is the tuple of each range's element,
 * which workers spread into work(a, b, ...) (Task.spreadDatum).
 */
export const MultiInputSetSchema = z.object({
  kind: z.literal('multi'),
  ranges: z.array(MultiRangeDimensionSchema).min(1).max(Limits.maxRangesPerMultiRange),
});
export type MultiInputSetDescriptor = z.infer<typeof MultiInputSetSchema>;

/**
 * How an input set travels to the scheduler. Ranges (plain, sparse, multi) and distributions
 * travel as their description (the scheduler computes datum(i) itself); arrays and iterables
 * travel as their values.
 */
export const InputSetSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('range'), range: RangeObjectSchema }),
  z.object({ kind: z.literal('array'), values: z.array(z.unknown()) }),
  SparseInputSetSchema,
  MultiInputSetSchema,
  DistributionInputSetSchema,
]);
export type InputSetDescriptor = z.infer<typeof InputSetSchema>;

// ---------------------------------------------------------------- jobs

/** 'paused': no slices are handed out until the owner resumes it (job.resume()); it can still be cancelled. */
export const RunStatusSchema = z.enum(['running', 'paused', 'finished', 'cancelled', 'failed']);
export type RunStatus = z.infer<typeof RunStatusSchema>;

export const JobPublicSchema = z
  .object({ name: z.string().max(200).optional(), description: z.string().max(2000).optional(), link: z.string().max(2000).optional() })
  .default({});
export type JobPublic = z.infer<typeof JobPublicSchema>;

// ---------------------------------------------------------------- modules (spec job.requires(), "Modules")
// The SDK bundles a job's private modules and packages on the client into CommonJS files (see
// libs/client/src/modules.ts); they travel with the deploy, are stored content-addressed by hash,
// and reach each worker connection once. No defaults or transforms: the spec is signed as parsed.

/** A module's id in its job: a path with '/' separators, relative to the job's module root ('fixtures/refiner.js'). */
export const ModuleIdSchema = z.string().min(1).max(1000);
/** require() specifier -> module id: how one module's require() calls resolve (as the SDK's bundler resolved them). */
export const ModuleRequireMapSchema = z.record(z.string().min(1).max(1000), ModuleIdSchema);

/** One CommonJS module as deployed: its id, its source and how its require() calls resolve. */
export const JobModuleSchema = z.object({ id: ModuleIdSchema, source: z.string(), requires: ModuleRequireMapSchema });
export type JobModule = z.infer<typeof JobModuleSchema>;

/** Every id a module table names exists in it, once. */
function checkModuleIds(table: { main: Record<string, string>; files: Array<{ id: string; requires: Record<string, string> }> }, context: z.RefinementCtx): void {
  const ids = new Set<string>();
  for (const file of table.files) {
    if (ids.has(file.id)) context.addIssue({ code: 'custom', message: `module ${file.id} appears twice`, path: ['files'] });
    ids.add(file.id);
  }
  const check = (map: Record<string, string>, where: string) => {
    for (const [specifier, id] of Object.entries(map)) {
      if (!ids.has(id)) context.addIssue({ code: 'custom', message: `${where}: require('${specifier}') names module ${id}, which is not in the job`, path: ['files'] });
    }
  };
  check(table.main, 'the work function');
  for (const file of table.files) check(file.requires, `module ${file.id}`);
}

/**
 * The modules of a job (spec job.requires()): `main` is what the work function's require()
 * resolves (the names given to job.requires()), `files` every module, dependencies included.
 */
export const JobModulesSchema = z
  .object({ main: ModuleRequireMapSchema, files: z.array(JobModuleSchema).min(1).max(Limits.maxModulesPerJob) })
  .superRefine(checkModuleIds);
export type JobModules = z.infer<typeof JobModulesSchema>;

/** A job's modules as a worker gets them: the table without sources, each file naming its source by hash. */
export const ModuleTableSchema = z
  .object({
    main: ModuleRequireMapSchema,
    files: z.array(z.object({ id: ModuleIdSchema, hash: HashSchema, requires: ModuleRequireMapSchema })).min(1).max(Limits.maxModulesPerJob),
  })
  .superRefine(checkModuleIds);
export type ModuleTable = z.infer<typeof ModuleTableSchema>;

/** A module source, content-addressed: hash = hashOf(source). */
export const ModuleSourceSchema = z.object({ hash: HashSchema, source: z.string() });
export type ModuleSource = z.infer<typeof ModuleSourceSchema>;

/** What the client signs and the scheduler stores. */
export const JobSpecSchema = z.object({
  owner: AddressSchema,
  /** Work function source (Function.prototype.toString or a string evaluating to a function). */
  work: z.string().min(1),
  arguments: z.array(z.unknown()).default([]),
  inputSet: InputSetSchema,
  requirements: z.record(z.string(), z.unknown()).default({}),
  /** DCC per slice, as a decimal string; "0" asks for free computation. */
  slicePaymentOffer: z.string().regex(/^\d+(\.\d+)?$/).default('0'),
  public: JobPublicSchema,
  collateResults: z.boolean().default(true),
  /** Compute groups the job runs in, with the credentials to join them; absent or empty: the public group. Never stored (only the join keys are). */
  computeGroups: z.array(ComputeGroupCredentialSchema).max(ComputeGroupLimits.maxGroupsPerJob).optional(),
  /** Modules the work function may require() (spec job.requires()); absent when there are none. Counted in maxWorkBytes. */
  modules: JobModulesSchema.optional(),
  /**
   * A job made by appliance.for / appliance.do: the appliance version and function whose source
   * `work` is. The scheduler checks that `work` hashes to that function's published source.
   */
  appliance: ApplianceJobRefSchema.optional(),
  /** spec "Shared State": the initial job.state (state text, see shared-state.ts); absent: {}. */
  state: StateTextSchema.optional(),
  /** Random per deploy; with expiresAt it makes a signed deploy single-use. */
  nonce: z.string().min(8).max(100),
  issuedAt: z.number().int(),
  expiresAt: z.number().int(),
});
export type JobSpec = z.infer<typeof JobSpecSchema>;
export type JobSpecInput = z.input<typeof JobSpecSchema>;

export const DeployRequestSchema = z.object({
  job: JobSpecSchema,
  signature: z.string().regex(/^0x[0-9a-fA-F]+$/),
  /** Push results to the deploying socket although collateResults is false (it has `result` listeners). Not signed: it is about this socket. */
  resultEvents: z.boolean().optional(),
});
export type DeployRequest = z.infer<typeof DeployRequestSchema>;

export const JobStatusSchema = z.object({
  jobId: JobIdSchema,
  owner: AddressSchema,
  runStatus: RunStatusSchema,
  total: z.number().int().nonnegative(),
  distributed: z.number().int().nonnegative(),
  computed: z.number().int().nonnegative(),
  errors: z.number().int().nonnegative(),
  /** Why the job ended or is paused; ENOFUNDS carries the DCC (smallest unit) its hold lacked. */
  failure: z.object({ code: z.string(), message: z.string(), fundsRequired: z.string().regex(/^\d+$/).optional() }).nullable(),
  /** Paid jobs: the offer per slice (DCC), slices escrowed so far, and what workers were paid (smallest unit). */
  payment: z.object({ offerPerSlice: z.string(), escrowedSlices: z.number().int().nonnegative(), paid: z.string().regex(/^\d+$/) }).nullable().optional(),
  public: JobPublicSchema,
  createdAt: z.string(),
  finishedAt: z.string().nullable(),
  /** spec "meanSliceProfile": measured from the results so far; null until the first result. */
  meanSliceProfile: z.lazy(() => SliceProfileSchema).nullable().optional(),
  /**
   * Why a running job gets no slices out, e.g. 'no connected worker meets the job requirements and shares its compute groups'
   * (a worker asking for work skipped it within the last 30 s and no worker leased it since).
   * Null or absent when nothing is known to hold it back.
   */
  waitingFor: z.string().nullable().optional(),
  /** The appliance, version and function the job's work came from (appliance.for / appliance.do); absent for ad-hoc jobs. */
  appliance: JobApplianceSchema.optional(),
});
export type JobStatus = z.infer<typeof JobStatusSchema>;

/**
 * A signed request on an existing job: the owner signs {action, jobId, nonce, expiresAt[, amount]}.
 * `escrow` adds `amount` (smallest unit) to a paid job's hold (spec job.escrow); `resume` re-escrows
 * a job paused for ENOFUNDS before it continues.
 */
export const JobActionSchema = z.object({
  action: z.enum(['cancel', 'pause', 'resume', 'escrow']),
  jobId: JobIdSchema,
  amount: z.string().regex(/^\d{1,78}$/).optional(),
  nonce: z.string().min(8).max(100),
  expiresAt: z.number().int(),
});
export type JobAction = z.infer<typeof JobActionSchema>;
export const JobActionRequestSchema = z.object({ request: JobActionSchema, signature: z.string() });
export type JobActionRequest = z.infer<typeof JobActionRequestSchema>;

export const SliceResultSchema = z.object({ sliceIndex: SliceIndexSchema, value: z.unknown() });
export type SliceResult = z.infer<typeof SliceResultSchema>;

export const ResultsPageQuerySchema = z.object({
  after: z.coerce.number().int().min(-1).default(-1),
  limit: z.coerce.number().int().positive().max(Limits.maxResultsPerPage).default(1000),
});
export const ResultsPageSchema = z.object({
  jobId: JobIdSchema,
  results: z.array(SliceResultSchema),
  /** Pass as `after` to get the next page; null on the last page. */
  nextAfter: z.number().int().nullable(),
});
export type ResultsPage = z.infer<typeof ResultsPageSchema>;

// ---------------------------------------------------------------- slices in flight

export const SliceErrorSchema = z.object({
  code: z.string(),
  name: z.string().default('Error'),
  message: z.string(),
  stack: z.string().optional(),
  /** ENOPROGRESS: what the sandbox heard from progress() before it stopped the slice (spec "noProgress"). */
  progress: z.lazy(() => ProgressReportsSchema).optional(),
});
export type SliceError = z.infer<typeof SliceErrorSchema>;

export const ConsoleLevelSchema = z.enum(['debug', 'info', 'log', 'warn', 'error']);
export type ConsoleLevel = z.infer<typeof ConsoleLevelSchema>;

export const ConsoleEntrySchema = z.object({
  sliceIndex: SliceIndexSchema,
  level: ConsoleLevelSchema,
  message: z.string(),
  /** How many identical messages before this one were folded into it (spec "console" event, `same`). */
  same: z.number().int().nonnegative().optional(),
});
export type ConsoleEntry = z.infer<typeof ConsoleEntrySchema>;

export const CustomEventSchema = z.object({ sliceIndex: SliceIndexSchema, event: z.string().min(1).max(200), value: z.unknown() });
export type CustomEvent = z.infer<typeof CustomEventSchema>;

export const TaskSliceSchema = z.object({ sliceIndex: SliceIndexSchema, datum: z.unknown() });
export type TaskSlice = z.infer<typeof TaskSliceSchema>;

export const TaskSchema = z.object({
  taskId: TaskIdSchema,
  jobId: JobIdSchema,
  workHash: HashSchema,
  /** Present the first time this worker receives this work function; afterwards it uses its cache. */
  work: z.string().optional(),
  arguments: z.array(z.unknown()),
  public: JobPublicSchema,
  slices: z.array(TaskSliceSchema).min(1).max(Limits.maxSlicesPerTask),
  leaseDeadline: z.number().int(),
  progressTimeoutMs: z.number().int().positive(),
  sliceTimeLimitMs: z.number().int().positive(),
  /** Each datum is an argument tuple to spread into work(...datum, ...arguments): set for multi-range jobs (compute.for form 3). */
  spreadDatum: z.boolean().default(false),
  /** A job with modules (job.requires()): hashOf(its ModuleTable). Absent for jobs without. */
  modulesHash: HashSchema.optional(),
  /** The module table, present the first time this worker connection receives it; afterwards the worker uses its cache. */
  modules: ModuleTableSchema.optional(),
  /** Module sources this worker connection has not received yet (each is sent once per connection, then cached by hash). */
  moduleSources: z.array(ModuleSourceSchema).max(Limits.maxModulesPerJob).optional(),
  /** spec "Shared State": the job's state when the task was granted (worker.state); absent: {} at version 0. */
  state: StateSnapshotSchema.optional(),
});
export type Task = z.infer<typeof TaskSchema>;

export const SliceOutcomeSchema = z.discriminatedUnion('status', [
  z.object({ sliceIndex: SliceIndexSchema, status: z.literal('ok'), value: z.unknown(), elapsedMs: z.number().nonnegative() }),
  z.object({ sliceIndex: SliceIndexSchema, status: z.literal('error'), error: SliceErrorSchema, elapsedMs: z.number().nonnegative() }),
]);
export type SliceOutcome = z.infer<typeof SliceOutcomeSchema>;

// ---------------------------------------------------------------- worker <-> scheduler

/**
 * Bounds of a worker's declared capabilities (spec "Requirements Objects"): at most `maxDepth`
 * levels of plain objects whose leaves are booleans, numbers, short strings or null, `maxKeys`
 * members per object. Declared, never verified: the scheduler uses them only to match job
 * requirements (a worker lying about them gets work it cannot run, which fails as counted slice
 * errors, or gives wrong results to the job that asked for them); pay never depends on them.
 */
export const WorkerCapabilityLimits = { maxKeys: 64, maxKeyChars: 64, maxStringChars: 256, maxDepth: 3 } as const;
const CapabilityKeySchema = z.string().min(1).max(WorkerCapabilityLimits.maxKeyChars);
const CapabilityLeafSchema = z.union([z.boolean(), z.number(), z.string().max(WorkerCapabilityLimits.maxStringChars), z.null()]);
const fewKeys = (value: Record<string, unknown>) => Object.keys(value).length <= WorkerCapabilityLimits.maxKeys;
const capabilityObject = <T extends z.ZodType>(member: T) =>
  z.record(CapabilityKeySchema, member).refine(fewKeys, `at most ${WorkerCapabilityLimits.maxKeys} members`);
export const WorkerCapabilitiesSchema = capabilityObject(
  z.union([CapabilityLeafSchema, capabilityObject(z.union([CapabilityLeafSchema, capabilityObject(CapabilityLeafSchema)]))]),
);

export const WorkerHelloSchema = z.object({
  workerId: z.string().min(8).max(100),
  earnings: AddressSchema.optional(),
  sandboxes: z.number().int().positive().max(1024),
  capabilities: WorkerCapabilitiesSchema.default({}),
  version: z.string().default('0'),
  /** The least DCC per slice this worker works for: it is never given a job that offers less. */
  minWage: z.string().regex(/^\d+(\.\d+)?$/).default('0'),
  /** Compute groups the worker joins (checked at connection: a bad credential refuses it). */
  computeGroups: z.array(ComputeGroupCredentialSchema).max(ComputeGroupLimits.maxGroupsPerWorker).default([]),
  /** false: run only jobs of the groups above, none of the public group's. */
  publicGroup: z.boolean().default(true),
});
export type WorkerHello = z.infer<typeof WorkerHelloSchema>;

/** Sent to workers when a job is cancelled or failed: stop its slices, drop their results. */
export const JobStopEventSchema = z.object({ jobId: JobIdSchema });
export type JobStopEvent = z.infer<typeof JobStopEventSchema>;

export const TaskRequestSchema = z.object({ maxSlices: z.number().int().positive().max(Limits.maxSlicesPerTask * 16) });
export type TaskRequest = z.infer<typeof TaskRequestSchema>;
export const TaskGrantSchema = z.object({ tasks: z.array(TaskSchema) });
export type TaskGrant = z.infer<typeof TaskGrantSchema>;

export const TaskResultsSchema = z.object({
  taskId: TaskIdSchema,
  jobId: JobIdSchema,
  outcomes: z.array(SliceOutcomeSchema).min(1).max(Limits.maxSlicesPerTask),
});
export type TaskResults = z.infer<typeof TaskResultsSchema>;
export const TaskResultsAckSchema = z.object({
  accepted: z.array(SliceIndexSchema),
  refused: z.array(z.object({ sliceIndex: SliceIndexSchema, code: z.string() })),
});
export type TaskResultsAck = z.infer<typeof TaskResultsAckSchema>;

export const TaskReturnSchema = z.object({ taskId: TaskIdSchema, jobId: JobIdSchema, sliceIndexes: z.array(SliceIndexSchema).max(Limits.maxSlicesPerTask) });
export type TaskReturn = z.infer<typeof TaskReturnSchema>;

/** Console and custom events of slices; each is taken only if its slice is leased to the sending worker (in `taskId` when given). */
export const WorkerEventsSchema = z.object({
  jobId: JobIdSchema,
  taskId: TaskIdSchema.optional(),
  console: z.array(ConsoleEntrySchema).max(10_000).default([]),
  custom: z.array(CustomEventSchema).max(10_000).default([]),
});
export type WorkerEvents = z.infer<typeof WorkerEventsSchema>;

// ---------------------------------------------------------------- client <-> scheduler

// ---------------------------------------------------------------- reading a job (read capabilities)
// The job id is a name, not a key: reading a job's status, results, events or state needs its
// read token (a capability the deploy reply hands the owner, and the owner may hand on) or the
// owner's signature. The scheduler keeps only each token's sha256.

/** A job's read token: 32 random bytes as 64 lowercase hex digits. */
export const ReadTokenSchema = z.string().regex(/^[0-9a-f]{64}$/, 'not a read token');
/** The HTTP header that carries a read token on GET /jobs/:id and GET /jobs/:id/results. */
export const ReadTokenHeader = 'x-commune-read-token';

/**
 * The owner's signed request for a new read token of its job (kind read-grant): how
 * compute.resume(id) follows a job deployed elsewhere. Single-use (nonce), short-lived.
 */
export const ReadGrantSchema = z.object({
  jobId: JobIdSchema,
  owner: AddressSchema,
  nonce: z.string().min(8).max(100),
  expiresAt: z.number().int(),
});
export type ReadGrant = z.infer<typeof ReadGrantSchema>;
export const SignedReadGrantSchema = z.object({ request: ReadGrantSchema, signature: z.string().max(200) });
export type SignedReadGrant = z.infer<typeof SignedReadGrantSchema>;

/** How a client proves it may read a job: its read token, or the owner's signed grant. */
const jobReadAccess = { readToken: ReadTokenSchema.optional(), grant: SignedReadGrantSchema.optional() };
export interface JobReadAccess {
  readToken?: string;
  grant?: SignedReadGrant;
}

/**
 * `results: false` joins the job's events without its results (a non-collating job with no
 * `result` listener). Needs `readToken` or `grant`; a grant is answered with a new read token.
 */
// ---------------------------------------------------------------- a job's event stream (resumable)
// Every job event (accepted, status, results, console, custom, slice error, end) has a place in
// the job's event log: a sequence number, contiguous per job across replicas, in an epoch that
// names the log's incarnation (a Redis that lost its data starts a new one). A client that missed
// events asks for those after its cursor; results come back from PostgreSQL.

/** Bounds of a job's event replay (subscribe `since`, job:events). */
export const JobEventLimits = {
  /** Events in one replay page; the reply says `more` when the log holds further ones. */
  maxEventsPerPage: 500,
  /**
   * JSON bytes of the events of one replay page: a page stops before the event that would pass
   * this (it always carries at least one), so a page stays about one message's size.
   */
  maxPageBytes: Limits.maxMessageBytes,
  /** Characters of an epoch (the scheduler makes 16 hex digits). */
  maxEpochChars: 64,
} as const;

/** Where a client stands in a job's event log: the log's epoch and the last sequence number it has. */
export const JobEventCursorSchema = z.object({
  epoch: z.string().min(1).max(JobEventLimits.maxEpochChars).regex(/^[0-9a-f]+$/, 'not an epoch'),
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
});
export type JobEventCursor = z.infer<typeof JobEventCursorSchema>;

/**
 * `results: false` joins the job's events without its results (a non-collating job with no
 * `result` listener). Needs `readToken` or `grant`; a grant is answered with a new read token.
 * `since`: the reply's `events` carry what the log holds after that cursor (a reconnect after
 * missed events); without it the reply's `events.cursor` says where the log stands now.
 */
export const SubscribeRequestSchema = z.object({ jobId: JobIdSchema, results: z.boolean().optional(), since: JobEventCursorSchema.optional(), ...jobReadAccess });
export type SubscribeRequest = z.infer<typeof SubscribeRequestSchema>;
export const UnsubscribeRequestSchema = z.object({ jobId: JobIdSchema });

/** Client -> scheduler `state:get` / `state:subscribe`: the job's shared state, with the same read access as subscribe. */
export const ClientStateReadSchema = z.object({ jobId: JobIdSchema, ...jobReadAccess });
export type ClientStateRead = z.infer<typeof ClientStateReadSchema>;

/** An acknowledgement: either ok with data or an error with a code. */
export const ErrorReplySchema = z.object({ ok: z.literal(false), code: z.string(), message: z.string() });
export type ErrorReply = z.infer<typeof ErrorReplySchema>;

export const SubscribeReplySchema = z.union([
  z.object({ ok: z.literal(true), status: JobStatusSchema, readToken: ReadTokenSchema.optional(), events: z.lazy(() => JobEventPageSchema).optional() }),
  ErrorReplySchema,
]);
export type SubscribeReply = z.infer<typeof SubscribeReplySchema>;
export type Reply<T> = ({ ok: true } & T) | ErrorReply;

export const DeployReplySchema = z.union([
  /** `readToken`: the job's read capability (see ReadTokenSchema); keep it to read the job later. */
  z.object({ ok: z.literal(true), jobId: JobIdSchema, total: z.number().int().nonnegative(), receipt: z.string(), readToken: ReadTokenSchema }),
  ErrorReplySchema,
]);
export type DeployReply = z.infer<typeof DeployReplySchema>;

// Each job event carries its place in the job's event log (`cursor`); absent only when the
// scheduler could not write the log (Redis unreachable): such an event is delivered as it comes.
const eventCursor = { cursor: JobEventCursorSchema.optional() };
export const JobAcceptedEventSchema = z.object({ jobId: JobIdSchema, total: z.number().int().nonnegative(), ...eventCursor });
export type JobAcceptedEvent = z.infer<typeof JobAcceptedEventSchema>;
export const JobStatusEventSchema = JobStatusSchema.extend(eventCursor);
export type JobStatusEvent = z.infer<typeof JobStatusEventSchema>;
/**
 * `results` is empty for a socket that did not ask for the job's results: the event only keeps
 * its place in the log (its sequence number), so the socket sees no hole there.
 */
export const JobResultsEventSchema = z.object({ jobId: JobIdSchema, results: z.array(SliceResultSchema), ...eventCursor });
export type JobResultsEvent = z.infer<typeof JobResultsEventSchema>;
export const JobConsoleEventSchema = z.object({ jobId: JobIdSchema, entries: z.array(ConsoleEntrySchema), ...eventCursor });
export type JobConsoleEvent = z.infer<typeof JobConsoleEventSchema>;
export const JobCustomEventSchema = z.object({ jobId: JobIdSchema, events: z.array(CustomEventSchema), ...eventCursor });
export type JobCustomEvent = z.infer<typeof JobCustomEventSchema>;
export const JobSliceErrorEventSchema = z.object({ jobId: JobIdSchema, sliceIndex: SliceIndexSchema, error: SliceErrorSchema, ...eventCursor });
export type JobSliceErrorEvent = z.infer<typeof JobSliceErrorEventSchema>;
export const JobEndEventSchema = z.object({ jobId: JobIdSchema, status: JobStatusSchema, ...eventCursor });
export type JobEndEvent = z.infer<typeof JobEndEventSchema>;

/** One event of a replay: the socket.io event name and its payload, exactly as it went out live (cursor included). */
export const JobEventEntrySchema = z.discriminatedUnion('name', [
  z.object({ name: z.literal('job:accepted'), event: JobAcceptedEventSchema }),
  z.object({ name: z.literal('job:status'), event: JobStatusEventSchema }),
  z.object({ name: z.literal('job:results'), event: JobResultsEventSchema }),
  z.object({ name: z.literal('job:console'), event: JobConsoleEventSchema }),
  z.object({ name: z.literal('job:custom'), event: JobCustomEventSchema }),
  z.object({ name: z.literal('job:slice-error'), event: JobSliceErrorEventSchema }),
  z.object({ name: z.literal('job:end'), event: JobEndEventSchema }),
]);
export type JobEventEntry = z.infer<typeof JobEventEntrySchema>;
export type JobEventName = JobEventEntry['name'];

/**
 * A page of a job's event log after a cursor. `events` are in sequence order, each with its
 * cursor. `gap`: events between the asked-for cursor and the first one here are lost (Redis lost
 * its data, so the epoch changed; they were trimmed past the job's retention; or the log expired):
 * read the job's status and results again (REST), its console and custom events of that stretch
 * are gone. `cursor`: where the log stands now (null when Redis holds no log generation at the
 * moment). `more`: the log holds further events; ask again after the last one here.
 * Results events carry their values only for sockets that asked for the job's results.
 */
export const JobEventPageSchema = z.object({
  cursor: JobEventCursorSchema.nullable(),
  gap: z.boolean(),
  events: z.array(JobEventEntrySchema).max(JobEventLimits.maxEventsPerPage),
  more: z.boolean(),
});
export type JobEventPage = z.infer<typeof JobEventPageSchema>;

/** Client -> scheduler `job:events`: the next page of a job's event log after `since`, with the same read access as subscribe. */
export const JobEventsRequestSchema = z.object({ jobId: JobIdSchema, since: JobEventCursorSchema, ...jobReadAccess });
export type JobEventsRequest = z.infer<typeof JobEventsRequestSchema>;
export const JobEventsReplySchema = z.union([z.object({ ok: z.literal(true), events: JobEventPageSchema }), ErrorReplySchema]);
export type JobEventsReply = z.infer<typeof JobEventsReplySchema>;

// ---------------------------------------------------------------- Compute API: results, job queries, market (owner-signed REST)
// The job/result/static part of the Compute API: result handles' list/delete/fetch/stat,
// compute.status form 2, compute.getJobInfo / getSliceInfo, compute.getMarketValue, slice
// profiles and the progress reports behind the noProgress event. Owner-only REST requests carry
// an OwnerRequest signature in headers (see OwnerRequestHeaders).

/** spec "SliceProfile Objects": what one slice costs. Hours of CPU/GPU, megabytes (10^6 bytes) in and out. */
export const SliceProfileSchema = z.object({
  cpuHours: z.number().nonnegative(),
  gpuHours: z.number().nonnegative(),
  inputMBytes: z.number().nonnegative(),
  outputMBytes: z.number().nonnegative(),
});
export type SliceProfile = z.infer<typeof SliceProfileSchema>;

/** One progress report a sandbox received (spec "noProgress": progressReports.last / lastUpdate). */
export const ProgressReportSchema = z.object({
  /** Milliseconds since the slice started. */
  timestamp: z.number().nonnegative(),
  /** The progress as a ratio 0..1; null when indeterminate (progress() without an argument). */
  progress: z.number().min(0).max(1).nullable(),
  /** The argument passed to progress() (a number or a percentage string); null when there was none. */
  value: z.union([z.number(), z.string().max(100)]).nullable(),
  /** Calls to progress() since the previous report that were not reported (throttled). */
  throttledReports: z.number().int().nonnegative(),
});
export type ProgressReport = z.infer<typeof ProgressReportSchema>;

export const ProgressReportsSchema = z.object({
  /** How long the slice ran before it was stopped, ms. */
  elapsedMs: z.number().nonnegative(),
  /** The last report received; null when progress() was never called. */
  last: ProgressReportSchema.nullable(),
  /** The last determinate report (one with a progress value); null when there was none. */
  lastUpdate: ProgressReportSchema.nullable(),
});
export type ProgressReports = z.infer<typeof ProgressReportsSchema>;

/** Slice numbers start..end (inclusive), every step-th: a range object over slice numbers. */
export const SliceRangeSchema = z
  .object({ start: SliceIndexSchema, end: SliceIndexSchema, step: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional() })
  .refine((range) => range.end >= range.start, { message: 'end must not be below start' });
export type SliceRange = z.infer<typeof SliceRangeSchema>;

/** A set of slice numbers as a sparse range object, {sparse: [range, ...]}; the ranges may overlap. */
export const SliceSetSchema = z.object({ sparse: z.array(SliceRangeSchema).max(Limits.maxSliceRangesPerRequest) });
export type SliceSet = z.infer<typeof SliceSetSchema>;

/**
 * An owner-signed REST request. The client signs the canonical JSON of {method, path, owner,
 * nonce, expiresAt} with the job owner's key and sends the fields in OwnerRequestHeaders; `path`
 * is the request's path and query string exactly as sent, from the scheduler's root
 * (`/jobs/j_.../results/list?slices=...`). The scheduler refuses expired requests, reused
 * nonces and signers that do not own what is asked for.
 */
export const OwnerRequestSchema = z.object({
  method: z.enum(['GET', 'POST', 'DELETE']),
  path: z.string().min(1).max(8192),
  owner: AddressSchema,
  nonce: z.string().min(8).max(100),
  expiresAt: z.number().int(),
});
export type OwnerRequest = z.infer<typeof OwnerRequestSchema>;
export const OwnerRequestHeaders = {
  owner: 'x-commune-owner',
  nonce: 'x-commune-nonce',
  expiresAt: 'x-commune-expires-at',
  signature: 'x-commune-signature',
} as const;

/** Query of GET /jobs/:id/results/list, /results/values, /results/stat and DELETE /jobs/:id/results. */
export const SliceSetQuerySchema = z.object({
  /** A SliceSet as JSON; all slices when absent. */
  slices: z
    .string()
    .max(8192)
    .optional()
    .transform((text, context) => {
      if (text === undefined) return undefined;
      try {
        return SliceSetSchema.parse(JSON.parse(text));
      } catch {
        context.addIssue({ code: 'custom', message: 'slices must be a JSON sparse range object {sparse: [{start, end, step?}, ...]}' });
        return z.NEVER;
      }
    }),
  after: z.coerce.number().int().min(-1).default(-1),
  limit: z.coerce.number().int().positive().max(Limits.maxResultsPerPage).default(1000),
});

/** results.list: the computed slices as runs (range objects over slice numbers), ascending. */
export const ResultsListPageSchema = z.object({
  jobId: JobIdSchema,
  slices: SliceSetSchema.extend({ sparse: z.array(SliceRangeSchema) }),
  /** Slices in this page's runs. */
  count: z.number().int().nonnegative(),
  /** Pass as `after` for the next page; null on the last page. */
  nextAfter: z.number().int().nullable(),
});
export type ResultsListPage = z.infer<typeof ResultsListPageSchema>;

export const ResultsDeleteReplySchema = z.object({ jobId: JobIdSchema, deleted: z.number().int().nonnegative() });
export type ResultsDeleteReply = z.infer<typeof ResultsDeleteReplySchema>;

/** results.stat: per slice, when it was first handed to a worker, when its result arrived, what it cost. */
export const SliceStatSchema = z.object({
  sliceIndex: SliceIndexSchema,
  /** ISO time of the slice's first lease; null when the scheduler has no record of it. */
  distributedTime: z.string().nullable(),
  /** ISO time the scheduler accepted the result. */
  computedTime: z.string(),
  /** DCC charged for the slice, a decimal string ('0' while jobs are free). */
  payment: z.string(),
});
export type SliceStat = z.infer<typeof SliceStatSchema>;
export const ResultStatsPageSchema = z.object({ jobId: JobIdSchema, stats: z.array(SliceStatSchema), nextAfter: z.number().int().nullable() });
export type ResultStatsPage = z.infer<typeof ResultStatsPageSchema>;

/** compute.status(paymentAccount, startTime, endTime): GET /jobs?owner&from&to&limit (signed by owner). */
export const OwnerJobsQuerySchema = z.object({
  owner: AddressSchema,
  /** Jobs created before this (ms since the epoch) are not listed. */
  from: z.coerce.number().int().optional(),
  /** Jobs created after this are not listed. */
  to: z.coerce.number().int().optional(),
  limit: z.coerce.number().int().positive().max(Limits.maxJobsPerStatusList).default(Limits.maxJobsPerStatusList),
});
export const OwnerJobsSchema = z.object({ owner: AddressSchema, jobs: z.array(JobStatusSchema) });
export type OwnerJobs = z.infer<typeof OwnerJobsSchema>;

/** compute.getJobInfo: what was deployed, with its status. */
export const JobInfoSchema = z.object({
  jobId: JobIdSchema,
  status: JobStatusSchema,
  work: z.string(),
  arguments: z.array(z.unknown()),
  inputSet: InputSetSchema,
  requirements: z.record(z.string(), z.unknown()),
  public: JobPublicSchema,
  slicePaymentOffer: z.string(),
  collateResults: z.boolean(),
  receipt: z.string(),
  /** job.requires(): the module table (ids, hashes, require maps; sources are not repeated here). */
  modules: ModuleTableSchema.optional(),
  /** Join keys of the compute groups the job runs in (never a secret). */
  computeGroups: z.array(z.string()).optional(),
});
export type JobInfo = z.infer<typeof JobInfoSchema>;

export const SliceFailureRecordSchema = z.object({ code: z.string(), message: z.string(), time: z.string() });
/** compute.getSliceInfo: one slice's status and history. */
export const SliceInfoSchema = z.object({
  sliceIndex: SliceIndexSchema,
  /** computed: has a result; deleted: had one, deleted by its owner; failed: attempts failed and there is no result. */
  status: z.enum(['computed', 'deleted', 'failed']),
  /** Attempts recorded: failures, plus one for the attempt that produced the result. */
  attempts: z.number().int().nonnegative(),
  distributedTime: z.string().nullable(),
  computedTime: z.string().nullable(),
  /** Sandbox time of the attempt that produced the result. */
  elapsedMs: z.number().int().nonnegative().nullable(),
  failures: z.array(SliceFailureRecordSchema),
});
export type SliceInfo = z.infer<typeof SliceInfoSchema>;
export const SliceInfoQuerySchema = z.object({
  after: z.coerce.number().int().min(-1).default(-1),
  limit: z.coerce.number().int().positive().max(Limits.maxSliceInfoPerPage).default(Limits.maxSliceInfoPerPage),
});
/** Slices with a history (a result or a failed attempt), ascending; untouched slices are not listed. */
export const SliceInfoPageSchema = z.object({
  jobId: JobIdSchema,
  status: JobStatusSchema,
  slices: z.array(SliceInfoSchema),
  nextAfter: z.number().int().nullable(),
});
export type SliceInfoPage = z.infer<typeof SliceInfoPageSchema>;

/** A DCC amount as a decimal string (fractions allowed: rates are far below one DCC). */
export const DecimalSchema = z.string().regex(/^\d+(\.\d+)?$/, 'not a non-negative decimal');

/** spec "compute.getMarketValue": the price of work, DCC per CPU hour, GPU hour, megabyte in and out. */
export const WorkValueSchema = z.object({ CPUHour: DecimalSchema, GPUHour: DecimalSchema, InputMByte: DecimalSchema, OutputMByte: DecimalSchema });
export type WorkValue = z.infer<typeof WorkValueSchema>;

/** A WorkValue signed by the scheduler: a firm quote until quoteExpiry. `signature` is over the rest. */
export const WorkValueQuoteSchema = WorkValueSchema.extend({
  currency: z.literal('DCC'),
  issuedAt: z.number().int(),
  quoteExpiry: z.number().int(),
  /** The address of the scheduler key that signed the quote. */
  signer: AddressSchema,
  signature: z.string().regex(/^0x[0-9a-fA-F]+$/),
});
export type WorkValueQuote = z.infer<typeof WorkValueQuoteSchema>;
