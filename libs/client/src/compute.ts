import BigNumber from 'bignumber.js';
import {
  AddressSchema,
  CommuneError,
  ErrorCode,
  JobActionSchema,
  JobIdSchema,
  Limits,
  newId,
  SignedKind,
  signRequest,
  type JobInfo,
  type JobStatus,
  type SliceInfo,
  type SliceProfile,
  type WorkValue,
  type WorkValueQuote,
} from '@commune/protocol';
import {
  Distribution,
  formRange,
  isDistributionLike,
  isMultiRangeArray,
  isMultiRangeLike,
  isRangeLike,
  isSparseRangeLike,
  ArrayInputSet,
  MultiRangeObject,
  RangeObject,
  SparseRangeObject,
  toInputSet,
  type InputSet,
} from '@commune/ranges';
import { Job, makeMarketRate, makeMarketValue, type JobContext, type JobSigner, type MarketValueOffer } from './job.js';
import { calculateSlicePayment, getMarketValue } from './market.js';
import { getJobInfo, getSliceInfo, listJobs } from './owner-api.js';
import { createComputeGroup, getComputeGroup, type CreateComputeGroupOptions } from './compute-groups.js';
import type { ComputeGroupInfo } from '@commune/protocol';
import { stats, type Stats } from './stats.js';
import { applianceClassFor, type ApplianceClass } from './appliance.js';
import { RemoteDataPattern, RemoteDataSet, refuseUrl, refuseUrls } from './dcp/remote-data.js';

/**
 * The compute module (spec "Compute API"): compute.for and compute.do make job handles;
 * compute.cancel and compute.status act on deployed jobs by id.
 */

/** A work function, or its source as a string that evaluates to a function. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type WorkFunction = string | ((...args: any[]) => unknown);

/** spec "Range Objects": a plain object or a RangeObject. */
export interface RangeSpec {
  start: number | string;
  end: number | string;
  step?: number | string;
  group?: number;
}

/** spec compute.for form 3: `{ranges: [rangeObject, ...]}` (an array of range objects means the same). */
export interface MultiRangeSpec {
  ranges: Array<RangeObject | RangeSpec | SparseRangeObject | { sparse: RangeSpec[] } | Distribution>;
}

/** Range bounds: numbers, bigints or BigNumbers (kept exact as decimal strings). */
export type RangeBound = number | bigint | BigNumber;

/** The work function's extra arguments (spec: "an optional Array-like object"). */
export type WorkArguments = ArrayLike<unknown>;

export interface Compute {
  /**
   * spec "compute.for":
   * - form 1: for(rangeObject, work, arguments)
   * - form 2a: for(start, end, step, work, arguments)
   * - form 2b: for(start, end, work, arguments)
   * - form 3: for({ranges: [rangeObject, ...]}, work, arguments), or an array whose elements are
   *   all range objects: nested loops, work(i, j, ..., ...arguments), nested results
   * - form 4: for(iterable, work, arguments), iterable being an Array, a generator or any iterable
   * Distribution objects (stats.set.*) and sparse range objects go where a range object goes.
   */
  for(range: RangeObject | RangeSpec | SparseRangeObject | { sparse: RangeSpec[] } | Distribution, work: WorkFunction, args?: WorkArguments): Job;
  for(multiRange: MultiRangeObject | MultiRangeSpec | Array<RangeObject | RangeSpec>, work: WorkFunction, args?: WorkArguments): Job;
  for(start: RangeBound, end: RangeBound, step: RangeBound, work: WorkFunction, args?: WorkArguments): Job;
  for(start: RangeBound, end: RangeBound, work: WorkFunction, args?: WorkArguments): Job;
  for(iterable: Iterable<unknown> | (() => Iterable<unknown>), work: WorkFunction, args?: WorkArguments): Job;
  /**
   * spec "compute.do":
   * - form 1: do(work, arguments): one slice
   * - form 2: do(n, work, arguments): n slices, whose inputs are 0..n-1
   */
  do(work: WorkFunction, args?: WorkArguments): Job;
  do(n: number, work: WorkFunction, args?: WorkArguments): Job;
  /** The job handle class: every job handle is an instance of compute.Job. */
  readonly Job: typeof Job;
  /**
   * spec "Appliance Handles": new compute.Appliance(name, version, publishKeystore) defines and
   * publishes an appliance version; new compute.Appliance(name, versionRange) uses a published one
   * (appliance.for / appliance.do with a function name). See appliance.ts.
   */
  readonly Appliance: ApplianceClass;
  /**
   * spec "compute.marketValue": a SlicePaymentDescriptor that exec() prices at the scheduler's
   * market rate when it deploys (compute.getMarketValue(): CPUHour / 3600 DCC per slice, the
   * value of one reference-core second), with no limit; marketValue(ratio, max): that rate times
   * ratio, at most max DCC per slice. `offerPerSlice` shows the price at the spec's NYI rate.
   */
  readonly marketValue: MarketValueOffer & ((ratio?: number, max?: number) => MarketValueOffer);
  /** spec "compute.marketRate": the going rate (as marketValue, by default 0.0001465376 DCC per slice), or marketRate(factor): the rate times factor. */
  readonly marketRate: MarketValueOffer & ((factor?: number) => MarketValueOffer);
  /**
   * The spec's Example 1 pays `compute.marketPrice`, a name the spec defines nowhere else: the
   * same descriptor as compute.marketRate (the market price of a slice), so that example runs as
   * a paid job at the market rate.
   */
  readonly marketPrice: MarketValueOffer & ((factor?: number) => MarketValueOffer);
  /** dcp-client's remote data classes: their constructors throw EINVAL (remote data is not supported yet; see dcp/remote-data.ts). */
  readonly RemoteDataSet: typeof RemoteDataSet;
  readonly RemoteDataPattern: typeof RemoteDataPattern;
  /** spec "compute.cancel": cancels a deployed job by id, signed by the default payment account. */
  cancel(jobId: string): Promise<void>;
  /** spec "compute.resume": a handle on a deployed job; its exec() resolves with every result, those computed before included. */
  resume(jobId: string): Job;
  /** spec "compute.status" form 1: the status of a job (an id or a job handle). */
  status(job: string | Job): Promise<JobStatus>;
  /**
   * spec "compute.status" form 2: the jobs of a payment account (a wallet, or the address of the
   * default one), created between startTime and endTime (ms since the epoch or Dates), newest first.
   */
  status(paymentAccount: JobSigner | string, startTime?: number | Date, endTime?: number | Date): Promise<JobStatus[]>;
  /** spec "compute.getJobInfo": what was deployed (work, arguments, input set, ...) and its status. Owner only. */
  getJobInfo(jobId: string): Promise<JobInfo>;
  /** spec "compute.getSliceInfo": the job's status and every slice with a history (result, failed attempts), in slice order. Owner only. */
  getSliceInfo(jobId: string): Promise<{ jobId: string; status: JobStatus; slices: SliceInfo[] }>;
  /** spec "compute.getMarketValue": a WorkValueQuote signed by the scheduler, firm until quoteExpiry. */
  getMarketValue(): Promise<WorkValueQuote>;
  /**
   * Commune: creates a compute group owned by the default keystore (or `options.owner`); jobs join
   * it with `job.computeGroups = [{ joinKey, joinSecret }]`, workers with `--join key:secret`.
   */
  createComputeGroup(options: CreateComputeGroupOptions & { owner?: JobSigner }): Promise<ComputeGroupInfo>;
  /** Commune: a compute group's public description. */
  getComputeGroup(joinKey: string): Promise<ComputeGroupInfo>;
  /** spec "compute.calculateSlicePayment": the DCC a slice with this profile costs at these rates. */
  calculateSlicePayment(sliceProfile: Partial<SliceProfile>, workValue: Partial<Record<keyof WorkValue, BigNumber.Value>>): number;
  /** spec "Distribution Objects": the stats module (`require('stats')` in DCP), the same object as the SDK's `stats` export. */
  readonly stats: Stats;
}

function fail(message: string): never {
  throw new CommuneError(ErrorCode.EINVAL, message);
}

/** compute.status form 2's first argument: a wallet or an address; undefined for form 1 (a job or a job id). */
function paymentAccountOf(value: unknown): { signer?: JobSigner; address?: string } | undefined {
  if (value instanceof Job) return undefined;
  if (typeof value === 'string') {
    const address = AddressSchema.safeParse(value);
    return address.success ? { address: address.data } : undefined;
  }
  const signer = value as JobSigner | null;
  if (typeof signer?.getAddress === 'function' && typeof signer?.signMessage === 'function') return { signer };
  return fail('compute.status takes a job handle or job id (form 1), or a payment account (a wallet or an address) and optional times (form 2)');
}

function jobIdOf(value: unknown): string {
  const parsed = JobIdSchema.safeParse(value);
  return parsed.success ? parsed.data : fail(`${JSON.stringify(value)} is not a job id`);
}

/** startTime / endTime: ms since the epoch or a Date. */
function timeOf(name: string, value: number | Date | undefined): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = value instanceof Date ? value.getTime() : value;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) fail(`compute.status: ${name} must be ms since the epoch or a Date, not ${String(value)}`);
  return Math.trunc(ms);
}

function isNumeric(value: unknown): value is RangeBound {
  return (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'bigint' || BigNumber.isBigNumber(value);
}

/** A bound as the range schema takes it: numbers as they are, bigints and BigNumbers as exact decimal strings. */
function rangeBound(value: RangeBound): number | string {
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') return value.toString();
  return new BigNumber(value).toFixed();
}

/**
 * The source sent to workers. A function becomes Function.prototype.toString (so it cannot
 * close over local variables); a string is sent as it is, and must evaluate to a function.
 */
export function workSourceOf(work: unknown): string {
  refuseUrl('the work function', work);
  if (typeof work === 'string') {
    if (work.trim() === '') fail('work is an empty string');
    return work;
  }
  if (typeof work !== 'function') fail(`work must be a function or its source as a string, not ${work === null ? 'null' : typeof work}`);
  const source = Function.prototype.toString.call(work);
  if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) {
    fail('work must be a function with its own source; bound and built-in functions have none');
  }
  checkFunctionExpression(source);
  return source;
}

/**
 * Method shorthand (`{ work(i) {...} }.work`) stringifies to `work(i) {...}`, which no sandbox
 * can evaluate. Compiling `(source)` without calling it catches that here rather than as a
 * SyntaxError on every worker.
 */
function checkFunctionExpression(source: string): void {
  try {
    new Function(`return (${source}\n);`);
  } catch (error) {
    if (error instanceof SyntaxError) {
      fail(`work's source does not evaluate to a function (is it a method shorthand? use a function expression): ${error.message}`);
    }
    // EvalError: code generation from strings is disabled here; the sandbox will judge.
  }
}

/** spec: "an optional Array-like object which contains arguments which are passed to the work function". */
export function workArgumentsOf(args: unknown): unknown[] {
  if (args === undefined) return [];
  if (typeof args === 'object' && args !== null && typeof (args as ArrayLike<unknown>).length === 'number') {
    const values = Array.from(args as ArrayLike<unknown>);
    refuseUrls('the work arguments:', values);
    return values;
  }
  return fail('arguments must be an Array-like object (an array of the extra arguments to work)');
}

function isGeneratorFunction(value: unknown): value is () => Iterable<unknown> {
  const tag = Object.prototype.toString.call(value);
  return tag === '[object GeneratorFunction]';
}

function isIterable(value: unknown): value is Iterable<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as Iterable<unknown>)[Symbol.iterator] === 'function';
}

/** What compute.for's arguments describe: the input set, the work source and the work arguments. */
export interface ParsedForm {
  inputSet: InputSet;
  work: string;
  arguments: unknown[];
}

export function parseForArguments(params: unknown[]): ParsedForm {
  const [first, second, third, fourth, fifth] = params;
  if (isNumeric(first) && isNumeric(second)) {
    if (isNumeric(third)) {
      // form 2a: for(start, end, step, work, arguments)
      const range = formRange(rangeBound(first), rangeBound(second), rangeBound(third));
      return { inputSet: toInputSet(range), work: workSourceOf(fourth), arguments: workArgumentsOf(fifth) };
    }
    // form 2b: for(start, end, work, arguments)
    const range = formRange(rangeBound(first), rangeBound(second));
    return { inputSet: toInputSet(range), work: workSourceOf(third), arguments: workArgumentsOf(fourth) };
  }
  if (first instanceof MultiRangeObject || isMultiRangeLike(first) || isMultiRangeArray(first)) {
    // form 3: for({ranges: [...]}, work, arguments); an array of range objects is the spec's own way
    // to write it (examples 4 and 5). Any other array is form 4 data.
    return { inputSet: toInputSet(first), work: workSourceOf(second), arguments: workArgumentsOf(third) };
  }
  if (
    first instanceof RangeObject ||
    first instanceof SparseRangeObject ||
    first instanceof Distribution ||
    isRangeLike(first) ||
    isSparseRangeLike(first) ||
    isDistributionLike(first)
  ) {
    // form 1: for(rangeObject, work, arguments), including sparse range objects and distribution objects
    return { inputSet: toInputSet(first), work: workSourceOf(second), arguments: workArgumentsOf(third) };
  }
  refuseUrl('the input set', first);
  if (isGeneratorFunction(first)) {
    // form 4 with a function* rather than the generator it makes
    return { inputSet: valuesWithoutUrls(toInputSet(first())), work: workSourceOf(second), arguments: workArgumentsOf(third) };
  }
  if (isIterable(first) || typeof first === 'string') {
    // form 4: for(iterable, work, arguments); the set is read once, here (toInputSet refuses strings)
    return { inputSet: valuesWithoutUrls(toInputSet(first)), work: workSourceOf(second), arguments: workArgumentsOf(third) };
  }
  return fail(
    'compute.for takes (rangeObject, work, args), (start, end, step, work, args), (start, end, work, args) or (iterable, work, args); ' +
      `the first argument was ${first === null ? 'null' : typeof first}`,
  );
}

/** Form 4's values, once they are read: a URL among them is refused (see dcp/remote-data.ts). */
function valuesWithoutUrls(inputSet: InputSet): InputSet {
  if (inputSet instanceof ArrayInputSet) refuseUrls('the input set:', inputSet.values);
  return inputSet;
}

export function parseDoArguments(params: unknown[]): ParsedForm {
  const [first, second, third] = params;
  if (typeof first === 'number' || typeof first === 'bigint' || BigNumber.isBigNumber(first)) {
    // form 2: do(n, work, arguments): inputs 0..n-1
    const n = Number(first);
    if (!Number.isSafeInteger(n) || n < 1) fail(`compute.do(n, work): n must be a positive integer, not ${String(first)}`);
    if (n > Limits.maxSlicesPerJob) throw new CommuneError(ErrorCode.ETOOMANYTASKS, `compute.do(n): n is ${n}; the limit is ${Limits.maxSlicesPerJob}`);
    return { inputSet: toInputSet(formRange(0, n - 1)), work: workSourceOf(second), arguments: workArgumentsOf(third) };
  }
  // form 1: do(work, arguments): one slice, whose input is 0 (as do(1, work, arguments))
  return { inputSet: toInputSet(formRange(0, 0)), work: workSourceOf(first), arguments: workArgumentsOf(second) };
}

export function createCompute(context: JobContext): Compute {
  const marketValue = makeMarketValue();
  const marketRate = makeMarketRate();
  const compute = {
    for: (...params: unknown[]) => {
      const parsed = parseForArguments(params);
      return new Job(context, { work: parsed.work, arguments: parsed.arguments, inputSet: parsed.inputSet });
    },
    do: (...params: unknown[]) => {
      const parsed = parseDoArguments(params);
      return new Job(context, { work: parsed.work, arguments: parsed.arguments, inputSet: parsed.inputSet });
    },
    Job,
    // Appliances run their functions as ordinary jobs of this context; they parse for/do arguments as compute does.
    Appliance: applianceClassFor({ ...context, forms: { parseForArguments, parseDoArguments, workSourceOf } }),
    marketValue,
    marketRate,
    // Example 1's name for the market rate: the very same descriptor.
    marketPrice: marketRate,
    RemoteDataSet,
    RemoteDataPattern,
    stats,
    resume: (jobId: string) => Job.resumed(context, jobIdOf(jobId)),
    getJobInfo: async (jobId: string) => getJobInfo(context.link(), await context.signer(), jobIdOf(jobId)),
    getSliceInfo: async (jobId: string) => getSliceInfo(context.link(), await context.signer(), jobIdOf(jobId)),
    getMarketValue: () => getMarketValue(context.link()),
    createComputeGroup: async (options: CreateComputeGroupOptions & { owner?: JobSigner }) => createComputeGroup(context.link(), options?.owner ?? (await context.signer()), options),
    getComputeGroup: (joinKey: string) => getComputeGroup(context.link(), joinKey),
    calculateSlicePayment,
    async cancel(jobId: string) {
      const signer = await context.signer();
      const request = JobActionSchema.parse({ action: 'cancel', jobId, nonce: newId('n'), expiresAt: Date.now() + Limits.maxSignatureLifetimeMs / 2 });
      await context.link().jobAction({ request, signature: await signRequest(signer, SignedKind.jobAction, request) });
    },
    async status(job: string | Job | JobSigner, startTime?: number | Date, endTime?: number | Date) {
      const account = paymentAccountOf(job);
      if (account === undefined) {
        // form 1: a job handle or a job id
        const jobId = typeof job === 'string' ? job : (job as Job).id;
        if (!jobId) throw new CommuneError(ErrorCode.EJOBSTATE, 'the job is not deployed');
        // With the job's read token when this program deployed or followed it, else signed by the default account.
        return context.link().getStatus(jobId, () => context.signer());
      }
      // form 2: the jobs of a payment account, signed by it (an address means the default account)
      const signer = account.signer ?? (await context.signer());
      const owner = account.address ?? (await signer.getAddress());
      return listJobs(context.link(), signer, owner, timeOf('startTime', startTime), timeOf('endTime', endTime));
    },
  };
  return compute as unknown as Compute;
}
