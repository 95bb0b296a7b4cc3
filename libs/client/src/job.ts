import { EventEmitter } from 'node:events';
import BigNumber from 'bignumber.js';
import type { Signer } from 'ethers';
import {
  CommuneError,
  ErrorCode,
  JobActionSchema,
  JobSpecSchema,
  Limits,
  newId,
  SignedKind,
  signDeploy,
  signRequest,
  type ApplianceJobRef,
  type ConsoleEntry,
  type CustomEvent,
  type InputSetDescriptor,
  type JobActionRequest,
  type JobPublic,
  type JobStatus,
  type JobSpec,
  type ProgressReport,
  type RunStatus,
  type SliceError,
  type SliceProfile,
  type SliceResult,
  ComputeGroupCredentialSchema,
  ComputeGroupLimits,
  type ComputeGroupCredential,
  workBytesOf,
  type JobModules,
} from '@commune/protocol';
import { ArrayInputSet, inputSetFromDescriptor, type InputSet } from '@commune/ranges';
import { isKnownCode, type DeployAccepted, type JobEventSink, type LinkEvent, type RunSnapshot, type SchedulerLink } from './connection.js';
import { acceptedEventOf } from './dcp/accepted-event.js';
import { estimateSlice } from './estimate.js';
import { getMarketValue } from './market.js';
import { marketOffer, marketRateOf, marketValueMarker, parseSlicePaymentOffer, sameDcc, toUnits, unitsToDcc } from './money.js';
import { startLocalRun, type LocalExecLimits, type LocalRun } from './local-exec.js';
import { bundleModules, callerDirectory, moduleRootPath, sandboxModulesOf, type ModuleRequest } from './modules.js';
import { deleteResults, getJobInfo, listResults, resultPages, sliceSetOf, statPages, type SliceRangeInput } from './owner-api.js';
import { JobStateController, noStateArbiter, type JobState, type StateArbiter } from './shared-state.js';
import { ClientStateOperationSchema, StateOperationReplySchema, stateBytes, type StateOperation } from '@commune/protocol';
import {
  createResultHandle,
  maxCollatedSlices,
  type RemoteResults,
  type ResultHandle,
  type ResultStore,
  type SliceRange,
  type SliceStatEntry,
} from './result-handle.js';

/** An event listener, as EventEmitter takes it. */
type Listener = Parameters<EventEmitter['on']>[1];

/** What signs deploys and actions: an ethers Wallet, or anything with the same two methods. */
export type JobSigner = Pick<Signer, 'getAddress' | 'signMessage'>;

/** What a job handle needs from the compute module that made it. */
export interface JobContext {
  readonly scheduler: URL;
  /** The scheduler link, made on first use. */
  link(): SchedulerLink;
  /** The default payment account (the default keystore unless init() was given another). */
  signer(): Promise<JobSigner>;
  /** The bank's URL (init's `bank`); job.bank. */
  readonly bank?: URL;
  /** Limits localExec() applies (init's `localExec`); Limits' defaults when absent. */
  readonly localExec?: LocalExecLimits;
}

/** What compute.for / compute.do hand to a new job. */
export interface JobDefinition {
  /** Work function source. */
  work: string;
  arguments: unknown[];
  inputSet: InputSet;
  /**
   * Where the work comes from when it is not known yet: appliance.for / appliance.do fetch the
   * function's published source on the first exec(), localExec() or estimate() (see appliance.ts).
   */
  source?: () => Promise<{ work: string; appliance: ApplianceJobRef }>;
}

/**
 * spec "SlicePaymentDescriptor Objects" made by compute.marketValue / compute.marketRate: a
 * request to pay the market rate (times `ratio` / `factor`, at most `max` DCC). exec() turns it
 * into a fixed offer per slice with the scheduler's current market rate (compute.getMarketValue():
 * CPUHour / 3600, the value of one reference-core second); `offerPerSlice` is what it comes to at
 * the spec's NYI market rate (0.0001465376 DCC per slice), the scheduler's default.
 */
export interface MarketValueOffer {
  readonly offerPerSlice: number;
  /** compute.marketValue: a market-value offer, `ratio` times the market value, at most `max` DCC per slice. */
  readonly marketValue?: true;
  readonly ratio?: number;
  readonly max?: number;
  /** compute.marketRate: the going rate times `factor`. */
  readonly marketRate?: true;
  readonly factor?: number;
}

/**
 * spec "SlicePaymentDescriptor Objects": DCC per slice as a number (or Number, bigint, BigNumber,
 * decimal string), {offerPerSlice}, or compute.marketValue / compute.marketRate. At most 18
 * decimals (a JS number is cut to 18).
 */
export type SlicePaymentOffer =
  | number
  | bigint
  | string
  | BigNumber
  | Number // eslint-disable-line @typescript-eslint/no-wrapper-object-types
  | { offerPerSlice: number | bigint | string | BigNumber }
  | MarketValueOffer
  | ((...args: never[]) => MarketValueOffer);

/** Before deploy a job is 'new'; while its deploy is in flight, 'deploying'; then the scheduler's run status. */
export type JobRunStatus = 'new' | 'deploying' | RunStatus;

/** spec "Job Handles / status": kept live while the job runs (the same object is updated in place). */
export interface JobStatusView {
  runStatus: JobRunStatus;
  /** Number of slices; undefined until the job is ready. */
  total: number | undefined;
  distributed: number;
  computed: number;
}

// ------------------------------------------------------------------ event payloads (spec "Events")

/**
 * `accepted`: the job handle, as dcp-client passes it (`({ id }) => ...`), with `job`, the spec's
 * "original object that was delivered to the scheduler for deployment" (see dcp/accepted-event.ts).
 */
export type AcceptedEvent = Job & { readonly job: JobSpec | LocalJobSpec };
/**
 * `disconnect`: the SDK lost the scheduler a deployed job runs on (named after dcp-client's
 * connection event of the same name). The job goes on on the scheduler; the SDK keeps trying
 * (every URL given to init) and emits `connect` when it follows the job again.
 */
export interface DisconnectEvent {
  address: string;
  /** The scheduler URL that was lost. */
  scheduler: string;
  /** Why: connection refused, closed, or no answer. */
  reason: string;
}

/** `connect`: after a `disconnect`, the SDK follows the job again on `scheduler` (results missed meanwhile are then fetched). */
export interface ConnectEvent {
  address: string;
  scheduler: string;
  /** How long the job was not followed, ms. */
  downtimeMs: number;
}

/** exec()'s fourth argument: how it behaves when the scheduler is lost. */
export interface ExecOptions {
  /** Sets job.unreachableTimeoutMs (see there). */
  unreachableTimeoutMs?: number;
}

export interface StatusEvent {
  address: string | undefined;
  total: number | undefined;
  distributed: number;
  computed: number;
  runStatus: JobRunStatus;
}
export interface ResultEvent {
  address: string;
  /** The scheduler does not report task ids to clients, so this is the slice number, as `sort`. */
  task: number;
  sort: number;
  result: { request: 'main'; result: unknown };
}
export type ConsoleEvent =
  | { address: string; sliceIndex: number; level: ConsoleEntry['level']; message: string }
  | { same: number };
export interface SliceErrorEvent {
  address: string;
  sliceIndex: number;
  message: string;
  stack: string | undefined;
  name: string;
  code: string;
}

/** spec "noProgress": a slice was stopped for not calling progress(). */
export interface NoProgressEvent {
  address: string;
  sliceIndex: number;
  /** How long the slice ran before it was stopped, ms. */
  timestamp: number;
  progressReports: { last: ProgressReport | null; lastUpdate: ProgressReport | null };
}
/** spec "noProgressData": noProgress plus the slice's input. */
export interface NoProgressDataEvent extends NoProgressEvent {
  data: unknown;
}

/**
 * `readystatechange` (DCP's job handles emit it with the new state): exec() goes 'exec' →
 * 'init' → 'preauth' (signing with the payment account) → 'deploying' → 'listeners' (event
 * delivery attached) → 'deployed'; exec() of compute.resume(id) goes 'exec' → 'init' →
 * 'preauth' → 'listeners' → 'deployed'; localExec() goes 'exec' → 'init' → 'deployed' (to
 * local sandboxes). A job that is not running yet is 'new'.
 */
export type ReadyState = 'new' | 'exec' | 'init' | 'preauth' | 'deploying' | 'listeners' | 'deployed';

/** A compute group the job runs in (DCP's computeGroups): its joinKey with the joinSecret, or with the joinHash. */
export interface ComputeGroup {
  joinKey?: string;
  joinSecret?: string;
  joinHash?: string;
  id?: string;
}

/** The `accepted` payload of localExec: what would have been deployed, without owner or signature. */
export type LocalJobSpec = Omit<JobSpec, 'owner' | 'nonce' | 'issuedAt' | 'expiresAt'>;

/** How long a signed deploy or action stays valid: half the scheduler's limit, leaving room for clock skew. */
const signatureLifetimeMs = Limits.maxSignatureLifetimeMs / 2;
const resultsPageLimit = 1000;
const resultsFetchAttempts = 3;
const maxLocalCores = 1024;

/** spec "compute.marketRate": "For now the scheduler will use 0.0001465376 DCC as the market rate". */
export const marketRatePerSlice = 0.0001465376;

function nonNegative(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new CommuneError(ErrorCode.EINVAL, `${name} must be a non-negative number, not ${String(value)}`);
  return value;
}

/** The market rate times `factor`, without the float error of 0.0001465376 * 3. */
function rateTimes(factor: number): number {
  return new BigNumber(marketRatePerSlice).times(factor).toNumber();
}

/**
 * `compute.marketValue`: usable as a value (the market rate when the job is exec()'d, no limit)
 * or called as marketValue(ratio, max) (the market rate times ratio, at most max DCC per slice).
 */
export function makeMarketValue(): MarketValueOffer & ((ratio?: number, max?: number) => MarketValueOffer) {
  const call = (ratio = 1, max?: number): MarketValueOffer => {
    const offer = rateTimes(nonNegative('marketValue(ratio)', ratio));
    const capped = max === undefined ? offer : Math.min(offer, nonNegative('marketValue(ratio, max)', max));
    return Object.assign(Object.create(null) as object, { marketValue: true as const, ratio, max, offerPerSlice: capped, [marketValueMarker]: true });
  };
  return Object.assign(call, { marketValue: true as const, offerPerSlice: marketRatePerSlice, [marketValueMarker]: true });
}

/** `compute.marketRate`: usable as a value (the going rate) or called as marketRate(factor) (the rate times factor). */
export function makeMarketRate(): MarketValueOffer & ((factor?: number) => MarketValueOffer) {
  const call = (factor = 1): MarketValueOffer =>
    Object.assign(Object.create(null) as object, {
      marketRate: true as const,
      factor,
      offerPerSlice: rateTimes(nonNegative('marketRate(factor)', factor)),
      [marketValueMarker]: true,
    });
  return Object.assign(call, { marketRate: true as const, factor: 1, offerPerSlice: marketRatePerSlice, [marketValueMarker]: true });
}

/**
 * Checks a slice payment offer (spec "SlicePaymentDescriptor Objects"): EINVAL when it is not
 * one. Whether paid jobs run is the scheduler's call (ENOBANK from a scheduler without a bank).
 */
export function checkSlicePaymentOffer(offer: unknown): void {
  parseSlicePaymentOffer(offer);
}

/**
 * A slice payment offer as the DCC decimal string a job spec carries. A compute.marketValue /
 * compute.marketRate descriptor is priced at `marketRateDcc` per slice (default: the spec's NYI
 * rate, 0.0001465376 DCC; exec() uses the scheduler's quote instead).
 */
export function slicePaymentOfferToDcc(offer: unknown, marketRateDcc: string = String(marketRatePerSlice)): string {
  const parsed = parseSlicePaymentOffer(offer);
  return parsed.kind === 'fixed' ? parsed.dcc : marketOffer(parsed, marketRateDcc);
}

/** The job as it travels: JSON-normalised (what is signed is what arrives) and within Limits. */
interface PreparedJob {
  work: string;
  arguments: unknown[];
  /** job.requires(): the bundled modules; counted in maxWorkBytes. */
  modules?: JobModules;
  descriptor: InputSetDescriptor;
  inputSet: InputSet;
  total: number;
}

function jsonRoundTrip(value: unknown, what: string): { json: string; value: unknown } {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new CommuneError(ErrorCode.EINVAL, `${what} must be representable in JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (json === undefined) throw new CommuneError(ErrorCode.EINVAL, `${what} must be representable in JSON`);
  return { json, value: JSON.parse(json) };
}

function prepare(definition: JobDefinition, modules?: JobModules): PreparedJob {
  const args = jsonRoundTrip(definition.arguments, 'the work arguments');
  // spec EWORKTOOBIG: "the combined size of the work function and local modules" (arguments too, as the scheduler counts).
  const workBytes = workBytesOf(definition.work, args.value, modules);
  if (workBytes > Limits.maxWorkBytes) {
    const what = modules ? `the work function, its arguments and its ${modules.files.length} modules` : 'the work function and its arguments';
    throw new CommuneError(ErrorCode.EWORKTOOBIG, `${what} are ${workBytes} bytes; the limit is ${Limits.maxWorkBytes}`);
  }
  let descriptor = definition.inputSet.describe();
  let inputSet = definition.inputSet;
  if (descriptor.kind === 'array') {
    const values = jsonRoundTrip(descriptor.values, 'the input set');
    const bytes = Buffer.byteLength(values.json);
    if (bytes > Limits.maxInputSetBytes) {
      throw new CommuneError(ErrorCode.ETOOBIG, `the input set is ${bytes} bytes as JSON; the limit is ${Limits.maxInputSetBytes} (describe large sets with a range)`);
    }
    descriptor = { kind: 'array', values: values.value as unknown[] };
    inputSet = inputSetFromDescriptor(descriptor);
  }
  const total = inputSet.sliceCount;
  if (total > Limits.maxSlicesPerJob) {
    throw new CommuneError(ErrorCode.ETOOMANYTASKS, `the input set has ${total} slices; the limit is ${Limits.maxSlicesPerJob}`);
  }
  return { work: definition.work, arguments: args.value as unknown[], ...(modules ? { modules } : {}), descriptor, inputSet, total };
}

function isSigner(value: unknown): value is JobSigner {
  return typeof (value as JobSigner | null)?.getAddress === 'function' && typeof (value as JobSigner | null)?.signMessage === 'function';
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The work property of a job handle (spec "Job Handles / work"): custom events that work
 * functions raise with `work.emit(name, value)`. Listeners run with `this` bound to the job, as
 * the spec's "EventEmitters" section asks, and an unheard custom `error` is dropped instead of
 * thrown.
 */
export class WorkEmitter extends EventEmitter {
  constructor(private readonly job: Job) {
    super();
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    const listeners = this.rawListeners(event);
    if (listeners.length === 0) return false;
    for (const raw of listeners) {
      // once() wrappers carry the user's function as `.listener`; remove and call it ourselves to bind `this`.
      const wrapped = (raw as { listener?: (...a: unknown[]) => unknown }).listener;
      if (wrapped) {
        this.removeListener(event, wrapped);
        wrapped.apply(this.job, args);
      } else (raw as (...a: unknown[]) => unknown).apply(this.job, args);
    }
    return true;
  }

  addEventListener(event: string | symbol, listener: Listener): this {
    return this.on(event, listener);
  }

  removeEventListener(event: string | symbol, listener: Listener): this {
    return this.removeListener(event, listener);
  }
}

/**
 * A job handle (spec "Job Handles"), made by compute.for and compute.do. An EventEmitter whose
 * listeners run with `this` = the job; `exec()` deploys it to the scheduler, `localExec()` runs it
 * in local sandboxes, and both resolve with a result handle.
 */
export class Job extends EventEmitter {
  /** Assigned by the scheduler on deploy (by localExec, a local id). */
  id: string | undefined;
  /** The scheduler's receipt for the deploy. */
  receipt: string | undefined;
  /**
   * The job's read capability from the deploy reply (absent for local runs and resumed jobs): who
   * holds it may read the job's status, results, events and state (header x-commune-read-token on
   * GET /jobs/:id and /jobs/:id/results, `readToken` in subscribe and state reads). The job id alone
   * reads nothing.
   */
  readToken: string | undefined;
  readonly status: JobStatusView = { runStatus: 'new', total: undefined, distributed: 0, computed: 0 };
  public: JobPublic = {};
  requirements: Record<string, unknown> = {};
  slicePaymentOffer: SlicePaymentOffer = 0;
  /** The account that owns and pays for the job; the default keystore when undefined. */
  paymentAccount: JobSigner | undefined;
  /** Kept for the API; the scheduler does not use slice profiles yet. */
  initialSliceProfile: unknown;
  /**
   * When false the scheduler keeps the results and the handle fills only through results.fetch();
   * results reach this client only while the job has `result` listeners.
   */
  collateResults = true;
  contextId: string | undefined;
  readonly work: WorkEmitter;
  /** The result handle of the latest run; set when it starts. */
  results: ResultHandle | undefined;
  /**
   * spec: "pushed on to require.path in the worker". Commune bundles modules on the client, so
   * these are directories searched for packages (bare job.requires() names and their bare
   * imports) after node_modules, relative to moduleRoot or the working directory.
   */
  requirePath: string[] = [];
  /** spec: "pushed on to module.path in the sandbox". As requirePath, searched after it. */
  modulePath: string[] = [];
  /**
   * Where job.requires('./relative') names are resolved: a directory (path or file: URL). When
   * undefined, each name is resolved from the directory of the file that called job.requires().
   */
  moduleRoot: string | URL | undefined;
  /** job.requires() names, with the directory each was declared from. */
  #moduleRequests: ModuleRequest[] = [];
  /** Compute groups to run in. Commune has none: exec() refuses a non-empty list (EINVAL). */
  computeGroups: ComputeGroup[] = [];
  /** spec: the average measured cost of the slices computed so far; undefined until the first result. */
  meanSliceProfile: SliceProfile | undefined;
  /**
   * How long exec() waits for an unreachable scheduler: once no scheduler URL has answered for
   * this many ms since the `disconnect` event, exec() rejects with EUNAVAILABLE (also emitted as
   * an `EUNAVAILABLE` event) and the handle lets go of the job, which keeps running on the
   * scheduler: exec() again, or compute.resume(job.id).exec(), follows it and gets every result.
   * Undefined (the default): exec() waits, trying the URLs again, until the job ends.
   */
  unreachableTimeoutMs: number | undefined;
  /** Where deployment stands; each change is emitted as `readystatechange` (see ReadyState). */
  readyState: ReadyState = 'new';
  /**
   * spec "Shared State": the job's state. Properties set before exec() / localExec() are its
   * initial state; afterwards set / testAndSet / increment go to the arbiter, `change` is emitted
   * on this handle when a state from it replaces the data, and when the run ends the data is
   * the arbiter's final state.
   */
  readonly state: JobState;
  readonly #state: JobStateController;

  readonly #context: JobContext;
  #definition: JobDefinition;
  #appliance: ApplianceJobRef | undefined;
  /** Set on handles made by compute.resume(id): exec() attaches to that job instead of deploying. */
  #resumeOf: string | undefined;
  #remoteRun: Promise<ResultHandle> | undefined;
  #deployed = false;
  #active = false;
  #ending = false;
  #cancelEmitted = false;
  #run: RunState | undefined;
  #signer: JobSigner | undefined;
  #deployWait: Promise<void> | undefined;
  #localRun: LocalRun | undefined;
  /** The sink of the remote run in flight, so cancel() can settle it from the action's answer. */
  #endSink: JobEventSink | undefined;
  /** The offer the job was deployed with, DCC per slice, once known. */
  #deployedOffer: string | undefined;
  /** An offer given to the first exec() of a compute.resume() handle: checked against the deployed one. */
  #askedOffer: SlicePaymentOffer | undefined;
  /** What exec() returns: settles with the remote run, or rejects first when the job pauses for ENOFUNDS. */
  #waiter: Promise<ResultHandle> | undefined;
  #trap: { waiter: Promise<ResultHandle>; reject: (error: unknown) => void } | undefined;
  /** The scheduler paused the job for lack of funds (failure ENOFUNDS). */
  #fundsPaused = false;
  /** While the job waits for funds its events are let go (so an idle program can exit); resume() and exec() follow it again. */
  #detachedForFunds = false;
  /** escrow and resume actions in flight. */
  readonly #moneyActions = new Set<Promise<unknown>>();
  /** While the scheduler is lost: since when, and the unreachableTimeoutMs timer. */
  #unreachable: { since: number; timer: ReturnType<typeof setTimeout> | undefined } | undefined;

  constructor(context: JobContext, definition: JobDefinition) {
    super();
    this.#context = context;
    this.#definition = definition;
    this.work = new WorkEmitter(this);
    this.#state = new JobStateController(this, () => this.#stateArbiter());
    this.state = this.#state.state;
    // spec: state change events are sent only to clients listening for them.
    this.on('newListener', (event: string | symbol) => {
      if (event === 'change') queueMicrotask(() => this.#followState());
    });
    // A non-collating job's results reach this client only for `result` listeners: ask for them when the first one comes.
    this.on('newListener', (event: string | symbol) => {
      if (event === 'result' && !this.collateResults && this.#run?.link && this.#run.jobId && this.#endSink) this.#run.link.wantResults(this.#run.jobId, this.#endSink);
    });
  }

  /**
   * spec compute.resume(jobId): a handle on a job deployed earlier (by this or another process).
   * exec() attaches to it and resolves with every result, fetching those already computed.
   */
  static resumed(context: JobContext, jobId: string): Job {
    const job = new Job(context, { work: '', arguments: [], inputSet: new ArrayInputSet([]) });
    job.#resumeOf = jobId;
    job.id = jobId;
    return job;
  }

  /** The scheduler this job deploys to. */
  get scheduler(): URL {
    return this.#context.scheduler;
  }

  /** spec: the bank the scheduler pays through (init's `bank`, else COMMUNE_BANK_URL, else http://localhost:4100). */
  get bank(): URL {
    return this.#context.bank ?? new URL(process.env.COMMUNE_BANK_URL ?? 'http://localhost:4100');
  }

  #setReadyState(state: ReadyState): void {
    if (this.readyState === state) return;
    this.readyState = state;
    this.emit('readystatechange', state);
  }

  /** The work function's source, as it is sent to workers ('' for an appliance job until its first run fetches it). */
  get workSource(): string {
    return this.#definition.work;
  }

  /** A job made by appliance.for / appliance.do: the appliance version and function it runs (known once its source is fetched). */
  get appliance(): ApplianceJobRef | undefined {
    return this.#appliance;
  }

  /** Fetches the work of an appliance job (once: later runs reuse it, so every run is the same version). */
  async #loadWork(): Promise<void> {
    const source = this.#definition.source;
    if (!source) return;
    const loaded = await source();
    this.#definition = { ...this.#definition, work: loaded.work, source: undefined };
    this.#appliance = loaded.appliance;
  }

  /** The arguments passed to the work function after each input. */
  get workArguments(): readonly unknown[] {
    return this.#definition.arguments;
  }

  get inputSet(): InputSet {
    return this.#definition.inputSet;
  }

  /**
   * spec job.requires(): a module (a string) or modules (an array) the work function may
   * require(). './name' (or '../', '/') is a private module, read from disk when the job runs,
   * relative to the file calling requires() (or to job.moduleRoot); a bare name is a package from
   * node_modules. Both are bundled with their dependencies and sent with the job (see modules.ts).
   * May be called several times before the job is deployed; EPERM after.
   */
  requires(modules: string | readonly string[]): this {
    const names = typeof modules === 'string' ? [modules] : modules;
    if (!Array.isArray(names) || names.some((name) => typeof name !== 'string' || name.length === 0 || name.length > 1000)) {
      throw new CommuneError(ErrorCode.EINVAL, 'job.requires(modules): a module name (a non-empty string) or an array of them');
    }
    if (this.#remoteRun !== undefined || this.#deployed || this.#resumeOf !== undefined) {
      throw new CommuneError(ErrorCode.EPERM, 'job.requires() must come before the job is deployed');
    }
    const directory = callerDirectory(this.requires);
    for (const specifier of names) {
      if (!this.#moduleRequests.some((known) => known.specifier === specifier && known.directory === directory)) this.#moduleRequests.push({ specifier, directory });
    }
    return this;
  }

  /** The names given to job.requires(), in order. */
  get requiredModules(): readonly string[] {
    return this.#moduleRequests.map((request) => request.specifier);
  }

  /** Reads and bundles the job.requires() modules (undefined when there are none). */
  async #bundleModules(): Promise<JobModules | undefined> {
    const searchPaths = [...this.requirePath, ...this.modulePath];
    if (this.#moduleRequests.length === 0) return undefined;
    return bundleModules(this.#moduleRequests, {
      ...(this.moduleRoot !== undefined ? { moduleRoot: moduleRootPath(this.moduleRoot) } : {}),
      searchPaths,
    });
  }

  /** A slice error with nobody listening must not crash the program (Node throws unheard 'error' events). */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'error' && this.listenerCount('error') === 0) return false;
    return super.emit(event, ...args);
  }

  addEventListener(event: string | symbol, listener: Listener): this {
    return this.on(event, listener);
  }

  removeEventListener(event: string | symbol, listener: Listener): this {
    return this.removeListener(event, listener);
  }

  /**
   * spec: the offer for the job's slices (see SlicePaymentOffer); EINVAL when it is not one. The
   * scheduler does not change the offer of a deployed job yet, so after exec() (and on a
   * compute.resume() handle) a different offer throws EPERM and the same one changes nothing.
   */
  setSlicePaymentOffer(offer: SlicePaymentOffer): void {
    if (this.#remoteRun || this.#resumeOf !== undefined) {
      const same = ((typeof offer === 'object' && offer !== null) || typeof offer === 'function') && offer === this.slicePaymentOffer;
      if (!same && !this.#isDeployedOffer(offer)) {
        const now = this.#deployedOffer === undefined ? '' : ` (it offers ${this.#deployedOffer} DCC per slice)`;
        throw new CommuneError(ErrorCode.EPERM, `the offer of a deployed job cannot change${now}: the scheduler does not support it yet; deploy a new job`);
      }
      return;
    }
    checkSlicePaymentOffer(offer);
    this.slicePaymentOffer = offer;
  }

  #isDeployedOffer(offer: unknown): boolean {
    const parsed = parseSlicePaymentOffer(offer);
    return this.#deployedOffer !== undefined && parsed.kind === 'fixed' && sameDcc(parsed.dcc, this.#deployedOffer);
  }

  /** spec: changing the payment account after the first exec() is EPERM. */
  setPaymentAccountKeystore(account: JobSigner): void {
    if (this.#deployed || this.#remoteRun) throw new CommuneError(ErrorCode.EPERM, 'the payment account of a deployed job cannot change');
    if (!isSigner(account)) throw new CommuneError(ErrorCode.EINVAL, 'a payment account is a keystore wallet (getAddress and signMessage)');
    this.paymentAccount = account;
  }

  // ------------------------------------------------------------------ exec

  /**
   * Deploys the job and resolves with its result handle when it completes. Rejects with a
   * CommuneError whose code is the failure (ENOPROGRESS, ETOOMANYERRORS, ECANCELLED, ...), or
   * with ENOFUNDS (details.fundsRequired, DCC) when the scheduler pauses the job because its
   * payment account cannot cover the escrow. Calling it again on a deployed job returns the same
   * promise; after ENOFUNDS, it resumes the job (spec: "the scheduler [will] attempt to resume
   * the job") and waits for it again. `options.unreachableTimeoutMs` sets job.unreachableTimeoutMs:
   * exec() rejects with EUNAVAILABLE when no scheduler answered for that long (the job keeps
   * running; exec() again follows it).
   */
  exec(slicePaymentOffer?: SlicePaymentOffer, paymentAccount?: JobSigner, initialSliceProfile?: unknown, options?: ExecOptions): Promise<ResultHandle> {
    if (options?.unreachableTimeoutMs !== undefined) {
      const ms = options.unreachableTimeoutMs;
      if (typeof ms !== 'number' || !(ms > 0)) return Promise.reject(new CommuneError(ErrorCode.EINVAL, `exec(): unreachableTimeoutMs is a positive number of ms, not ${String(ms)}`));
      this.unreachableTimeoutMs = ms;
    }
    if (this.#remoteRun) {
      if (paymentAccount !== undefined) return Promise.reject(new CommuneError(ErrorCode.EPERM, 'the payment account of a deployed job cannot change'));
      try {
        if (slicePaymentOffer !== undefined) this.setSlicePaymentOffer(slicePaymentOffer);
      } catch (error) {
        return Promise.reject(error);
      }
      return this.#waiter ?? this.#resumeAndWait();
    }
    if (this.#active) return Promise.reject(new CommuneError(ErrorCode.EJOBSTATE, 'this job is running locally; wait for localExec() first'));
    try {
      if (slicePaymentOffer !== undefined) {
        if (this.#resumeOf !== undefined) this.#askedOffer = slicePaymentOffer;
        else this.slicePaymentOffer = slicePaymentOffer;
      }
      if (paymentAccount !== undefined) this.setPaymentAccountKeystore(paymentAccount);
      if (initialSliceProfile !== undefined) this.initialSliceProfile = initialSliceProfile;
      this.#checkNoModulesOrGroups();
    } catch (error) {
      return Promise.reject(error);
    }
    this.#setReadyState('exec');
    const run = this.#resumeOf !== undefined ? this.#execResumed(this.#resumeOf) : this.#execRemote();
    this.#remoteRun = run;
    const waiter = this.#watch(run);
    // A job that never reached the scheduler (ENOBANK, EINVAL, a refused deploy) can be fixed and exec()'d again.
    run.catch(() => {
      if (!this.#deployed) {
        this.#remoteRun = undefined;
        this.#waiter = undefined;
        this.#deployedOffer = undefined;
        this.readyState = 'new';
      }
    });
    return waiter;
  }

  /** What exec() returns for `run`: its outcome, unless the job pauses for ENOFUNDS first (see #spring). */
  #watch(run: Promise<ResultHandle>): Promise<ResultHandle> {
    let reject!: (error: unknown) => void;
    const waiter = new Promise<ResultHandle>((resolve, fail) => {
      reject = fail;
      run.then(resolve, fail).finally(() => {
        if (this.#trap?.waiter === waiter) this.#trap = undefined;
      });
    });
    this.#waiter = waiter;
    this.#trap = { waiter, reject };
    return waiter;
  }

  /** Rejects the pending exec() (of `waiter`, else whichever is pending); the next exec() resumes the job. */
  #spring(error: unknown, waiter?: Promise<ResultHandle>): void {
    const trap = this.#trap;
    if (!trap || (waiter !== undefined && trap.waiter !== waiter)) return;
    this.#trap = undefined;
    if (this.#waiter === trap.waiter) this.#waiter = undefined;
    trap.reject(error);
  }

  /** exec() after ENOFUNDS: resumes the job (when it is still paused) and waits for it again. */
  #resumeAndWait(): Promise<ResultHandle> {
    const waiter = this.#watch(this.#remoteRun as Promise<ResultHandle>);
    void (async () => {
      // An ENOFUNDS listener may be escrowing and then resuming right now: let it finish first
      // (a macrotask after each settles, so its next action has been started).
      do {
        await Promise.allSettled([...this.#moneyActions]);
        await new Promise((resolve) => setImmediate(resolve));
      } while (this.#moneyActions.size > 0);
      // Follow the job again first: it may have been resumed (or have ended) meanwhile.
      await this.#refollow();
      if (this.#ending || this.status.runStatus !== 'paused') return;
      await this.resume();
    })().catch((error: unknown) => this.#spring(error, waiter));
    return waiter;
  }

  async #execRemote(): Promise<ResultHandle> {
    this.#active = true;
    let deployed!: () => void;
    let notDeployed!: (error: unknown) => void;
    this.#deployWait = new Promise<void>((resolve, reject) => {
      deployed = resolve;
      notDeployed = reject;
    });
    this.#deployWait.catch(() => undefined);
    try {
      this.#setReadyState('init');
      const offer = parseSlicePaymentOffer(this.slicePaymentOffer);
      await this.#loadWork();
      const prepared = prepare(this.#definition, await this.#bundleModules());
      const run = this.#beginRun(prepared, prepared.total);
      if (prepared.total === 0) {
        // Nothing to compute: complete at once, as [].map() would, rather than deploy an empty job.
        notDeployed(new CommuneError(ErrorCode.EJOBSTATE, 'an empty job is not deployed'));
        return await this.#finish(run, { runStatus: 'finished', total: 0, distributed: 0, computed: 0, failure: null });
      }
      this.#setReadyState('preauth');
      const link = this.#context.link();
      // compute.marketValue / marketRate: priced now, at the scheduler's current market rate.
      const offerDcc = offer.kind === 'fixed' ? offer.dcc : marketOffer(offer, marketRateOf(await getMarketValue(link)));
      const signer = this.paymentAccount ?? (await this.#context.signer());
      this.#signer = signer;
      const issuedAt = Date.now();
      const parsedSpec = JobSpecSchema.safeParse({
        owner: await signer.getAddress(),
        ...this.#deployedBody(prepared, offerDcc),
        ...(this.computeGroups.length > 0 ? { computeGroups: this.#computeGroupCredentials() } : {}),
        nonce: newId('n'),
        issuedAt,
        expiresAt: issuedAt + signatureLifetimeMs,
      });
      if (!parsedSpec.success) throw new CommuneError(ErrorCode.EINVAL, `the job is not valid: ${parsedSpec.error.message}`, { issues: parsedSpec.error.issues });
      const spec = parsedSpec.data;
      // An array input set is signed as its sha256 (deploySigningPayload): signing and the scheduler's check cost a hash.
      const signature = await signDeploy(signer, spec);
      this.#deployedOffer = spec.slicePaymentOffer;
      this.status.runStatus = 'deploying';
      this.#setReadyState('deploying');
      // A non-collating job's results come only for `result` listeners (see collateResults).
      const resultEvents = this.collateResults || this.listenerCount('result') > 0;
      let accepted: DeployAccepted;
      try {
        accepted = await link.deploy({ job: spec, signature, ...(this.collateResults ? {} : { resultEvents }) });
      } catch (error) {
        this.status.runStatus = 'new';
        // spec "Error Statuses": the scheduler's errors are also emitted from the job handle.
        if (error instanceof CommuneError && error.code !== ErrorCode.ESCHEDULER) this.#emitFailure(error.code, error);
        throw error;
      }
      // From here on the job exists on the scheduler.
      this.#deployed = true;
      if (accepted.total !== prepared.total) {
        // The result handle follows the input set we sent; a scheduler that counts otherwise is a bug worth hearing about.
        process.emitWarning(`@commune/client: the scheduler counts ${accepted.total} slices in job ${accepted.jobId}; the SDK counts ${prepared.total}`);
      }
      run.jobId = accepted.jobId;
      run.link = link;
      this.id = accepted.jobId;
      this.receipt = accepted.receipt;
      this.readToken = accepted.readToken;
      this.status.total = accepted.total;
      this.status.runStatus = 'running';
      let sink!: JobEventSink;
      const ended = new Promise<RunSnapshot>((resolve) => {
        sink = this.#makeSink(run, resolve);
      });
      this.#endSink = sink;
      deployed();
      try {
        this.emit('accepted', acceptedEventOf(this as Job, spec) satisfies AcceptedEvent);
      } catch (error) {
        // A throwing listener ends this exec(); let go of the job so the socket can close.
        link.attach(accepted.jobId, sink);
        link.detach(accepted.jobId, sink);
        throw error;
      }
      this.#setReadyState('listeners');
      // Delivers what arrived before the ack, after `accepted`.
      this.#state.version = 0; // job.state is what was deployed
      link.attach(accepted.jobId, sink, { results: resultEvents });
      this.#followState();
      if (!resultEvents && this.listenerCount('result') > 0) link.wantResults(accepted.jobId, sink); // added by an `accepted` listener
      this.#setReadyState('deployed');
      const final = await ended;
      await this.#fetchFinalState(run);
      link.detach(accepted.jobId, sink);
      return await this.#finish(run, final);
    } catch (error) {
      notDeployed(error);
      throw error;
    } finally {
      this.#endSink = undefined;
      this.#active = false;
    }
  }

  /**
   * exec() of a compute.resume(id) handle: loads what was deployed (signed getJobInfo), follows
   * the job's events, fetches the results computed before (when collating) and settles like
   * exec() when the job ends, with every result.
   */
  async #execResumed(jobId: string): Promise<ResultHandle> {
    this.#active = true;
    let attached!: () => void;
    let notAttached!: (error: unknown) => void;
    this.#deployWait = new Promise<void>((resolve, reject) => {
      attached = resolve;
      notAttached = reject;
    });
    this.#deployWait.catch(() => undefined);
    const link = this.#context.link();
    let following = false;
    try {
      this.#setReadyState('init');
      this.#setReadyState('preauth');
      const signer = this.paymentAccount ?? (await this.#context.signer());
      this.#signer = signer;
      const info = await getJobInfo(link, signer, jobId);
      const inputSet = inputSetFromDescriptor(info.inputSet);
      this.#definition = { work: info.work, arguments: info.arguments, inputSet };
      const origin = info.status.appliance;
      this.#appliance = origin ? { versionId: origin.versionId, function: origin.function } : undefined;
      this.public = info.public;
      this.requirements = info.requirements;
      this.#deployedOffer = info.slicePaymentOffer;
      const asked = this.#askedOffer;
      this.#askedOffer = undefined;
      if (asked !== undefined && !this.#isDeployedOffer(asked)) {
        throw new CommuneError(ErrorCode.EPERM, `the offer of a deployed job cannot change (it offers ${info.slicePaymentOffer} DCC per slice)`);
      }
      this.slicePaymentOffer = info.slicePaymentOffer;
      this.collateResults = info.collateResults;
      this.receipt = info.receipt;
      const total = info.status.total;
      const run = this.#beginRun({ work: info.work, arguments: info.arguments, descriptor: info.inputSet, inputSet, total }, total);
      run.jobId = jobId;
      run.link = link;
      this.#deployed = true;
      this.status.total = total;
      this.status.runStatus = info.status.runStatus === 'paused' ? 'paused' : 'running';
      let sink!: JobEventSink;
      const ended = new Promise<RunSnapshot>((resolve) => {
        sink = this.#makeSink(run, resolve);
      });
      this.#endSink = sink;
      this.#setReadyState('listeners');
      const status = await link.follow(jobId, sink, this.collateResults || this.listenerCount('result') > 0, signer);
      following = true;
      attached();
      this.#setReadyState('deployed');
      this.#applyStatus(status);
      this.#followState();
      if (status.runStatus !== 'running' && status.runStatus !== 'paused') sink.onEnd(status);
      else if (this.collateResults) {
        // What was computed before we followed the job; later results arrive as events.
        await this.#fetchResults(run, { start: 0, end: run.store.total - 1 }, true, true);
      }
      const final = await ended;
      await this.#fetchFinalState(run); // job.state of a resumed job is the scheduler's, as for exec()
      following = false;
      link.detach(jobId, sink);
      return await this.#finish(run, final);
    } catch (error) {
      notAttached(error);
      if (following) link.detach(jobId, this.#endSink);
      throw error;
    } finally {
      this.#endSink = undefined;
      this.#active = false;
    }
  }

  /** Resets the run state: fresh status and a result handle for `total` slices. */
  /** What goes to the scheduler (and into the `accepted` event) apart from owner, nonce and times. */
  #deployedBody(prepared: PreparedJob, slicePaymentOffer = '0') {
    return {
      work: prepared.work,
      appliance: this.#appliance,
      arguments: prepared.arguments,
      inputSet: prepared.descriptor,
      requirements: this.requirements,
      slicePaymentOffer,
      public: this.public,
      collateResults: this.collateResults,
      ...(prepared.modules ? { modules: prepared.modules } : {}),
      ...this.#initialState(),
    };
  }

  /** The deployed `state` field: job.state as it is now (absent when empty). ESTATETOOBIG over the limit. */
  #initialState(): { state?: string } {
    const text = this.#state.text();
    const bytes = stateBytes(text);
    if (bytes > Limits.maxStateBytes) throw new CommuneError(ErrorCode.ESTATETOOBIG, `job.state is ${bytes} bytes; the limit is ${Limits.maxStateBytes}`);
    return text === '{}' ? {} : { state: text };
  }

  /** Who answers job.state's methods now: the local run, the scheduler the job runs on, or nobody (EJOBSTATE). */
  #stateArbiter(): StateArbiter {
    const local = this.#localRun;
    if (local?.operateState) return { operate: (operation) => local.operateState!(operation) };
    const run = this.#run;
    const link = run?.link;
    const jobId = run?.jobId;
    if (!link?.stateRequest || !jobId) return noStateArbiter;
    return {
      operate: async (operation: StateOperation) => {
        const signer = this.#signer ?? this.paymentAccount ?? (await this.#context.signer());
        const request = ClientStateOperationSchema.parse({ jobId, operation, nonce: newId('n'), expiresAt: Date.now() + signatureLifetimeMs });
        const reply = StateOperationReplySchema.safeParse(await link.stateRequest!('state:op', { request, signature: await signRequest(signer, SignedKind.stateOperation, request) }));
        if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, 'malformed state:op reply');
        if (!reply.data.ok) throw new CommuneError(isKnownCode(reply.data.code) ? reply.data.code : ErrorCode.ESCHEDULER, reply.data.message);
        return reply.data;
      },
    };
  }

  /** A `change` listener on a job running on a scheduler: ask for its state changes (and its state now). */
  #followState(): void {
    const run = this.#run;
    if (!run?.link?.stateRequest || !run.jobId || this.#ending || this.listenerCount('change') === 0) return;
    run.link.stateRequest('state:subscribe', { jobId: run.jobId }).then(
      (reply) => this.#state.applyReply(reply),
      (error: unknown) => process.emitWarning(`@commune/client: following the state of job ${run.jobId} failed: ${(error as Error)?.message ?? String(error)}`),
    );
  }

  /** The run ended: job.state becomes the scheduler's final state. */
  async #fetchFinalState(run: RunState): Promise<void> {
    if (!run.link?.stateRequest || !run.jobId) return;
    try {
      this.#state.applyReply(await run.link.stateRequest('state:get', { jobId: run.jobId }));
    } catch (error) {
      process.emitWarning(`@commune/client: reading the final state of job ${run.jobId} failed: ${(error as Error)?.message ?? String(error)}`);
    }
  }

  #beginRun(prepared: PreparedJob, total: number): RunState {
    this.#ending = false;
    this.#cancelEmitted = false;
    this.status.runStatus = 'new';
    this.status.total = undefined; // spec: undefined until the job is ready
    this.status.distributed = 0;
    this.status.computed = 0;
    this.meanSliceProfile = undefined;
    if (this.collateResults && total > maxCollatedSlices) {
      throw new CommuneError(ErrorCode.ETOOBIG, `a result handle holds at most ${maxCollatedSlices} slices; this job has ${total} (set collateResults = false)`);
    }
    const run = { jobId: undefined, link: undefined } as unknown as RunState;
    const size = Math.min(total, maxCollatedSlices);
    run.store = createResultHandle(
      prepared.inputSet,
      size,
      async (range, emitEvents) => {
        const { link, jobId, signer } = await this.#remoteOf(run, 'fetched');
        const everything: Required<SliceRange> = { start: 0, end: run.store.total - 1, step: 1 };
        for await (const results of resultPages(link, signer, jobId, sliceSetOf(range as SliceRangeInput | undefined))) {
          this.#acceptFetched(run, results, everything, emitEvents);
        }
      },
      this.#remoteResults(run, prepared.inputSet, size),
    );
    this.#run = run;
    this.results = run.store.handle;
    return run;
  }

  /** The scheduler, job and owner behind a run's result handle; EJOBSTATE for a local run. */
  async #remoteOf(run: RunState, what: string): Promise<{ link: SchedulerLink; jobId: string; signer: JobSigner }> {
    if (!run.link || !run.jobId) throw new CommuneError(ErrorCode.EJOBSTATE, `only the results of a job deployed to a scheduler can be ${what}`);
    const signer = this.#signer ?? this.paymentAccount ?? (await this.#context.signer());
    return { link: run.link, jobId: run.jobId, signer };
  }

  /** spec result handle list/delete/stat, against the scheduler that holds the run's results. */
  #remoteResults(run: RunState, inputSet: InputSet, size: number): RemoteResults {
    return {
      list: async (range) => {
        const { link, jobId, signer } = await this.#remoteOf(run, 'listed');
        return listResults(link, signer, jobId, sliceSetOf(range as SliceRangeInput | undefined));
      },
      delete: async (range) => {
        const { link, jobId, signer } = await this.#remoteOf(run, 'deleted');
        return deleteResults(link, signer, jobId, sliceSetOf(range as SliceRangeInput | undefined));
      },
      stat: async (range) => {
        const { link, jobId, signer } = await this.#remoteOf(run, 'described');
        const stats = createResultHandle<SliceStatEntry>(inputSet, size);
        for await (const page of statPages(link, signer, jobId, sliceSetOf(range as SliceRangeInput | undefined))) {
          for (const stat of page) {
            stats.set(stat.sliceIndex, {
              distributedTime: stat.distributedTime === null ? null : new Date(stat.distributedTime),
              computedTime: new Date(stat.computedTime),
              payment: stat.payment,
            });
          }
        }
        return stats.handle;
      },
    };
  }

  #makeSink(run: RunState, onEnd: (status: RunSnapshot) => void): JobEventSink {
    return {
      onStatus: (status) => this.#applyStatus(status),
      onResults: (results) => this.#acceptLive(run, results),
      onConsole: (entries) => this.#emitConsole(entries),
      onCustom: (events) => this.#emitCustom(events),
      onSliceError: (sliceIndex, error) => this.#emitSliceError(sliceIndex, error),
      onStateChange: (version, state) => this.#state.apply(version, state),
      onDisconnect: (event) => this.#lostScheduler(event),
      onReconnect: (event) => this.#foundScheduler(run, event),
      onEventsMissed: () => this.#fetchMissed(run),
      onEnd: (status) => {
        if (this.#ending) return;
        this.#ending = true;
        this.#clearUnreachable();
        onEnd(status);
      },
    };
  }

  /** The link lost the scheduler: `disconnect`, and the unreachableTimeoutMs deadline starts. */
  #lostScheduler(event: LinkEvent): void {
    if (this.#ending || this.#unreachable) return;
    const since = Date.now();
    const limit = this.unreachableTimeoutMs;
    const timer = limit !== undefined && limit > 0 && Number.isFinite(limit) ? setTimeout(() => this.#giveUpScheduler(event, limit), limit) : undefined;
    this.#unreachable = { since, timer };
    this.emit('disconnect', { address: this.id as string, scheduler: event.scheduler, reason: event.reason ?? 'connection lost' } satisfies DisconnectEvent);
  }

  /**
   * unreachableTimeoutMs passed without a scheduler: exec() rejects with EUNAVAILABLE and the
   * handle lets go of the job (it keeps running on the scheduler; exec() again follows it).
   */
  #giveUpScheduler(event: LinkEvent, limit: number): void {
    this.#unreachable = undefined;
    if (this.#ending) return;
    const urls = this.#run?.link?.urls?.map((url) => url.href).join(', ') ?? event.scheduler;
    const error = new CommuneError(
      ErrorCode.EUNAVAILABLE,
      `no scheduler answered for ${limit} ms (${urls}; last: ${event.reason ?? 'connection lost'}); job ${String(this.id)} keeps running there: exec() again or compute.resume(id).exec() follows it`,
      { jobId: this.id, schedulers: urls },
    );
    this.#letGoForFunds();
    this.#spring(error);
    this.#emitFailure(ErrorCode.EUNAVAILABLE, error);
  }

  #clearUnreachable(): void {
    if (this.#unreachable?.timer) clearTimeout(this.#unreachable.timer);
    this.#unreachable = undefined;
  }

  /**
   * The link follows the job again (on this or another replica): `connect`. The events sent while
   * it was away follow when the link `caughtUp` (replayed from the job's event log, results
   * included); otherwise results accepted meanwhile, which no event brought, are fetched
   * (collating jobs; others: job.results.fetch()).
   */
  #foundScheduler(run: RunState, event: LinkEvent): void {
    const since = this.#unreachable?.since;
    this.#clearUnreachable();
    if (this.#ending) return;
    this.emit('connect', { address: this.id as string, scheduler: event.scheduler, downtimeMs: since === undefined ? 0 : Date.now() - since } satisfies ConnectEvent);
    if (!event.caughtUp) this.#fetchMissed(run);
  }

  /** Results accepted while events were lost, which no event brought, are fetched (collating jobs; others: job.results.fetch()). */
  #fetchMissed(run: RunState): void {
    if (this.#ending || !this.collateResults || run.store.receivedCount >= run.store.total) return;
    this.#fetchResults(run, { start: 0, end: run.store.total - 1 }, true, true).catch((error: unknown) => {
      // The end of the job fetches whatever is still missing.
      process.emitWarning(`@commune/client: fetching the results of job ${String(run.jobId)} that no event brought failed: ${(error as Error)?.message ?? String(error)}`);
    });
  }

  #applyStatus(status: RunSnapshot): void {
    if (this.#ending) return;
    this.status.total = status.total;
    this.status.distributed = Math.max(this.status.distributed, status.distributed);
    this.status.computed = Math.max(status.computed, this.#run?.store.receivedCount ?? 0);
    if (status.runStatus === 'running' || status.runStatus === 'paused') this.status.runStatus = status.runStatus;
    if (status.meanSliceProfile) this.meanSliceProfile = status.meanSliceProfile;
    this.#emitStatus();
    this.#noteFunds(status);
  }

  /**
   * spec ENOFUNDS: the scheduler paused the job because its payment account cannot cover the
   * escrow (at deploy, or when it escrows the next slices). Lets go of the job's events, rejects
   * the pending exec() and emits `ENOFUNDS` with fundsRequired (DCC) and the error, once per pause.
   */
  #noteFunds(status: RunSnapshot): void {
    const failure = status.failure;
    const paused = status.runStatus === 'paused' && failure?.code === ErrorCode.ENOFUNDS;
    const already = this.#fundsPaused;
    this.#fundsPaused = paused;
    if (!paused || already) return;
    const error = new CommuneError(ErrorCode.ENOFUNDS, failure.message, { fundsRequired: fundsRequiredOf(failure) });
    this.#letGoForFunds();
    this.#spring(error);
    this.#emitFailure(ErrorCode.ENOFUNDS, error);
  }

  /** A failure code event (spec "Error Statuses"); ENOFUNDS listeners get (fundsRequired, error), as in the spec's example 7. */
  #emitFailure(code: string, error: CommuneError): void {
    if (code === ErrorCode.ENOFUNDS) this.emit(code, (error.details as { fundsRequired?: string } | undefined)?.fundsRequired, error);
    else this.emit(code, error);
  }

  /** Stops following a job that waits for funds (or whose scheduler is unreachable past unreachableTimeoutMs), so a program that gives up on it can exit; exec() follows it again. */
  #letGoForFunds(): void {
    const run = this.#run;
    const sink = this.#endSink;
    if (this.#detachedForFunds || !run?.link || !run.jobId || !sink) return;
    this.#detachedForFunds = true;
    run.link.detach(run.jobId, sink);
  }

  /** Follows the job's events again after #letGoForFunds. */
  async #refollow(): Promise<void> {
    const run = this.#run;
    const sink = this.#endSink;
    if (!this.#detachedForFunds || this.#ending || !run?.link || !run.jobId || !sink) return;
    this.#detachedForFunds = false;
    let status: JobStatus;
    try {
      status = await run.link.follow(run.jobId, sink, this.collateResults || this.listenerCount('result') > 0);
    } catch (error) {
      this.#detachedForFunds = true; // follow() lets go when it fails
      throw error;
    }
    this.#applyStatus(status);
    if (status.runStatus !== 'running' && status.runStatus !== 'paused') sink.onEnd(status);
  }

  #emitStatus(): void {
    const { total, distributed, computed, runStatus } = this.status;
    this.emit('status', { address: this.id, total, distributed, computed, runStatus } satisfies StatusEvent);
  }

  /** Results pushed by the scheduler (or a local sandbox): stored when collating, each new one emitted. */
  #acceptLive(run: RunState, results: SliceResult[]): void {
    let updated = false;
    for (const { sliceIndex, value } of results) {
      if (this.collateResults) {
        if (!run.store.set(sliceIndex, value)) continue; // the first result wins; repeats are not news
        updated = true;
      }
      this.#emitResult(run, sliceIndex, value);
    }
    if (run.store.receivedCount > this.status.computed) this.status.computed = run.store.receivedCount;
    if (updated) this.emit('resultsUpdated');
  }

  /** Results fetched over REST: stored whatever collateResults says (the caller asked for them). */
  #acceptFetched(run: RunState, results: SliceResult[], range: Required<SliceRange>, emitEvents: boolean | 'all'): void {
    let updated = false;
    for (const { sliceIndex, value } of results) {
      if (!inSliceRange(range, sliceIndex)) continue;
      const stored = run.store.set(sliceIndex, value);
      if (stored) updated = true;
      if (emitEvents === 'all' || (emitEvents && stored)) this.#emitResult(run, sliceIndex, value);
    }
    if (run.store.receivedCount > this.status.computed) this.status.computed = run.store.receivedCount;
    if (updated) this.emit('resultsUpdated');
  }

  #emitResult(run: RunState, sliceIndex: number, value: unknown): void {
    this.emit('result', {
      address: run.jobId as string,
      task: sliceIndex,
      sort: sliceIndex,
      result: { request: 'main', result: value },
    } satisfies ResultEvent);
  }

  #emitConsole(entries: ConsoleEntry[]): void {
    const address = this.id as string;
    for (const entry of entries) {
      // spec "console": repeats of the previous message are folded into a count; the sandbox
      // reports it as an entry with `same`, which the spec delivers as an event of {same} alone.
      if (entry.same !== undefined) this.emit('console', { same: entry.same } satisfies ConsoleEvent);
      else this.emit('console', { address, sliceIndex: entry.sliceIndex, level: entry.level, message: entry.message } satisfies ConsoleEvent);
    }
  }

  #emitCustom(events: CustomEvent[]): void {
    for (const event of events) this.work.emit(event.event, event.value);
  }

  #emitSliceError(sliceIndex: number, error: SliceError): void {
    this.emit('error', {
      address: this.id as string,
      sliceIndex,
      message: error.message,
      stack: error.stack,
      name: error.name,
      code: error.code,
    } satisfies SliceErrorEvent);
    if (error.code === ErrorCode.ENOPROGRESS) this.#emitNoProgress(sliceIndex, error);
  }

  /** spec noProgress / noProgressData, from the progress reports the sandbox saw before it stopped the slice. */
  #emitNoProgress(sliceIndex: number, error: SliceError): void {
    const event: NoProgressEvent = {
      address: this.id as string,
      sliceIndex,
      timestamp: error.progress?.elapsedMs ?? 0,
      progressReports: { last: error.progress?.last ?? null, lastUpdate: error.progress?.lastUpdate ?? null },
    };
    this.emit('noProgress', event);
    if (this.listenerCount('noProgressData') === 0) return;
    let data: unknown;
    try {
      data = this.#definition.inputSet.sliceDatum(sliceIndex);
    } catch {
      data = undefined; // not a slice of this input set (a scheduler bug); the event still goes out
    }
    this.emit('noProgressData', { ...event, data } satisfies NoProgressDataEvent);
  }

  /**
   * Pages results from the scheduler into the handle. With `skipPresent` it jumps over slices
   * it already holds, so the end-of-job catch-up costs what was missed, not the whole job.
   */
  async #fetchResults(run: RunState, range: SliceRange, emitEvents: boolean | 'all', skipPresent: boolean): Promise<void> {
    const { store, link, jobId } = run;
    if (!link || !jobId) return;
    const wanted: Required<SliceRange> = { start: Math.max(0, range.start), end: Math.min(range.end, store.total - 1), step: range.step ?? 1 };
    if (!Number.isInteger(wanted.step) || wanted.step < 1 || !Number.isInteger(wanted.start) || !Number.isInteger(wanted.end)) {
      throw new CommuneError(ErrorCode.EINVAL, 'a slice range has integer start and end and a positive integer step');
    }
    let next = skipPresent ? store.nextMissing(wanted.start) : wanted.start;
    let failures = 0;
    while (next !== -1 && next <= wanted.end) {
      let page;
      try {
        page = await link.getResultsPage(jobId, next - 1, resultsPageLimit);
      } catch (error) {
        if (++failures >= resultsFetchAttempts) throw error;
        await delay(250 * 2 ** failures);
        continue;
      }
      failures = 0;
      this.#acceptFetched(run, page.results, wanted, emitEvents);
      // A page that does not move forward would loop forever: stop instead.
      if (page.nextAfter === null || page.nextAfter < next) break;
      next = skipPresent ? store.nextMissing(page.nextAfter + 1) : page.nextAfter + 1;
    }
  }

  /** Settles a run from its final status: the result handle when finished, else the failure. */
  async #finish(run: RunState, status: RunSnapshot): Promise<ResultHandle> {
    const store = run.store;
    if (status.meanSliceProfile) this.meanSliceProfile = status.meanSliceProfile;
    this.status.total = status.total;
    this.status.distributed = Math.max(this.status.distributed, status.distributed);
    this.status.computed = Math.max(status.computed, store.receivedCount);
    if (status.runStatus === 'finished') {
      this.status.runStatus = 'finished';
      if (run.link && this.collateResults && store.receivedCount < store.total) {
        // Events can be missed (a reconnect, a full hold buffer): the scheduler has every
        // result, so fetch what did not arrive before declaring the job complete. If this
        // fails, exec() rejects and job.results.fetch() can be retried later.
        await this.#fetchResults(run, { start: 0, end: store.total - 1 }, true, true);
        if (store.receivedCount < store.total) {
          const missing = store.total - store.receivedCount;
          throw new CommuneError(ErrorCode.ESCHEDULER, `the job finished but the scheduler returned no result for ${missing} of ${store.total} slices`);
        }
      }
      this.status.computed = Math.max(this.status.computed, store.receivedCount);
      this.#emitStatus();
      this.emit('complete', store.handle);
      return store.handle;
    }
    this.status.runStatus = status.runStatus;
    const code = status.failure && isKnownCode(status.failure.code) ? status.failure.code : status.runStatus === 'cancelled' ? ErrorCode.ECANCELLED : ErrorCode.ESCHEDULER;
    const message = status.failure?.message ?? (status.runStatus === 'cancelled' ? 'the job was cancelled' : 'the job failed');
    const details = status.failure ? { failure: status.failure, ...(code === ErrorCode.ENOFUNDS ? { fundsRequired: fundsRequiredOf(status.failure) } : {}) } : undefined;
    const error = new CommuneError(code, message, details);
    this.#emitStatus();
    if (status.runStatus === 'cancelled' && !this.#cancelEmitted) {
      this.#cancelEmitted = true;
      this.emit('cancel');
    }
    if (status.failure) this.#emitFailure(code, error);
    throw error;
  }

  // ------------------------------------------------------------------ cancel

  /**
   * Cancels the job: resolves once the scheduler acknowledges (for a local run, at once) and
   * emits `cancel`. The pending exec() rejects with ECANCELLED.
   */
  async cancel(): Promise<void> {
    if (this.#localRun && this.#active) {
      this.#localRun.cancel();
      this.#emitCancelOnce();
      return;
    }
    if (!this.#remoteRun) {
      // A compute.resume(id) handle not exec()'d yet still names a deployed job.
      if (this.#resumeOf === undefined) throw new CommuneError(ErrorCode.EJOBSTATE, 'the job is not deployed');
      await this.#act('cancel', this.#resumeOf);
      this.#emitCancelOnce();
      return;
    }
    await this.#deployWait;
    if (this.#ending) {
      if (this.status.runStatus === 'cancelled') return;
      throw new CommuneError(ErrorCode.EJOBSTATE, `the job has already ended (${this.status.runStatus})`);
    }
    const status = await this.#act('cancel', this.id as string);
    this.#emitCancelOnce();
    // The action's answer carries the final status: settle now in case job:end never comes.
    if (status.runStatus !== 'running' && status.runStatus !== 'paused') this.#endFromOutside(status);
  }

  /** A signed action on the job (protocol JobActionSchema), by its payment account. */
  async #act(action: JobActionRequest['request']['action'], jobId: string, amount?: string) {
    const signer = this.#signer ?? this.paymentAccount ?? (await this.#context.signer());
    const request = JobActionSchema.parse({ action, jobId, ...(amount === undefined ? {} : { amount }), nonce: newId('n'), expiresAt: Date.now() + signatureLifetimeMs });
    const actionRequest: JobActionRequest = { request, signature: await signRequest(signer, SignedKind.jobAction, request) };
    return this.#context.link().jobAction(actionRequest);
  }

  // ------------------------------------------------------------------ resume, estimate

  /**
   * spec job.resume(): asks the scheduler to hand out the job's slices again (after it paused the
   * job) and resolves once it does; a running job is left running. A job paused for ENOFUNDS is
   * escrowed again first: ENOFUNDS (details.fundsRequired, DCC) when the payment account still
   * cannot cover it, and the job stays paused. EJOBSTATE for a job that has ended or was never
   * deployed.
   */
  async resume(): Promise<void> {
    const jobId = await this.#deployedId('resume');
    const ours = this.#run?.jobId === jobId;
    // Follow the job again first (it was let go while it waited for funds): no event of the resumed job is missed.
    if (ours) await this.#refollow();
    let status: JobStatus;
    try {
      status = await this.#moneyAction('resume', jobId);
    } catch (error) {
      if (ours && this.#fundsPaused) this.#letGoForFunds();
      throw error;
    }
    if (this.#run?.jobId === jobId) this.#applyStatus(status);
    if (ours && this.#detachedForFunds && !this.#fundsPaused) await this.#refollow();
  }

  /**
   * spec job.escrow(amount) (example 7, "Typical ENOFUNDS handler"): moves `amount` DCC (a
   * number, decimal string, bigint or BigNumber) from the payment account into the job's escrow
   * (its hold at the bank), covering that many more slices. Resolves once the scheduler holds it;
   * ENOFUNDS (details.fundsRequired, DCC) when the payment account cannot cover it, EJOBSTATE for
   * a free, ended or undeployed job, EINVAL unless the amount is a positive DCC amount. It does
   * not resume a paused job: resume() (or exec()) does.
   */
  async escrow(amount: number | string | bigint | BigNumber): Promise<void> {
    const units = toUnits('job.escrow(amount)', amount);
    if (units === '0') throw new CommuneError(ErrorCode.EINVAL, 'job.escrow(amount) needs a positive amount of DCC');
    const jobId = await this.#deployedId('escrow');
    const status = await this.#moneyAction('escrow', jobId, units);
    if (this.#run?.jobId === jobId) this.#applyStatus(status);
  }

  /** The id of the deployed job (waiting for a deploy in flight); EJOBSTATE when there is none. */
  async #deployedId(what: 'resume' | 'escrow'): Promise<string> {
    if (this.#remoteRun && !this.#deployed) await this.#deployWait?.catch(() => undefined);
    const jobId = this.#resumeOf ?? (this.#deployed ? this.id : undefined);
    if (jobId !== undefined) return jobId;
    if (this.#localRun) throw new CommuneError(ErrorCode.EJOBSTATE, what === 'resume' ? 'a localExec() run is never paused' : 'a localExec() run pays nothing');
    throw new CommuneError(ErrorCode.EJOBSTATE, 'the job is not deployed');
  }

  /** A resume or escrow action, tracked (exec() waits for them); an ENOFUNDS refusal says what is missing. */
  #moneyAction(action: 'resume' | 'escrow', jobId: string, amount?: string): Promise<JobStatus> {
    const pending = this.#act(action, jobId, amount).catch(async (error: unknown) => {
      throw await this.#explainNoFunds(error, jobId);
    });
    this.#moneyActions.add(pending);
    const forget = () => this.#moneyActions.delete(pending);
    pending.then(forget, forget);
    return pending;
  }

  /**
   * The scheduler's ENOFUNDS refusal of an action carries a message only: the job's status says
   * how much the payment account lacks (and the job's state changed with it: the scheduler pauses
   * a job whose escrow it could not grow).
   */
  async #explainNoFunds(error: unknown, jobId: string): Promise<unknown> {
    if (!(error instanceof CommuneError) || error.code !== ErrorCode.ENOFUNDS) return error;
    let units = (error.details as { fundsRequired?: unknown } | undefined)?.fundsRequired;
    let status: JobStatus | undefined;
    try {
      status = await this.#context.link().getStatus(jobId);
    } catch {
      // The refusal stands without the amount.
    }
    if (status && this.#run?.jobId === jobId) this.#applyStatus(status);
    if (typeof units !== 'string' || !/^\d+$/.test(units)) units = status?.failure?.code === ErrorCode.ENOFUNDS ? status.failure.fundsRequired : undefined;
    return new CommuneError(ErrorCode.ENOFUNDS, error.message, { fundsRequired: typeof units === 'string' ? unitsToDcc(units) : undefined });
  }

  /**
   * spec job.estimate(sample?): runs one slice in a local sandbox and resolves with what it cost
   * (a SliceProfile). The slice's input is `sample` when given, else the input set's first element.
   */
  async estimate(...sample: unknown[]): Promise<SliceProfile> {
    if (this.#resumeOf !== undefined && !this.#deployed) throw new CommuneError(ErrorCode.EJOBSTATE, 'exec() a resumed job before estimating it: its work function is on the scheduler');
    await this.#loadWork();
    const prepared = prepare(this.#definition, await this.#bundleModules());
    let datum: unknown;
    if (sample.length > 0) datum = jsonRoundTrip(sample[0], 'the sample datum').value;
    else if (prepared.total > 0) datum = prepared.inputSet.sliceDatum(0);
    else throw new CommuneError(ErrorCode.EINVAL, 'the input set is empty: pass a sample datum to estimate()');
    return estimateSlice({
      work: prepared.work,
      arguments: prepared.arguments,
      public: this.public,
      datum,
      spreadDatum: prepared.descriptor.kind === 'multi',
      modules: sandboxModulesOf(prepared.modules),
    });
  }

  /** Commune has no module system and no compute groups yet: refuse rather than run work that would fail. */
  #checkNoModulesOrGroups(): void {
    for (const [name, paths] of [['requirePath', this.requirePath], ['modulePath', this.modulePath]] as const) {
      if (!Array.isArray(paths) || paths.some((path) => typeof path !== 'string' || path.length === 0)) {
        throw new CommuneError(ErrorCode.EINVAL, `${name} is an array of directories (non-empty strings) searched for packages`);
      }
    }
    this.#computeGroupCredentials();
  }

  /**
   * The job's compute groups as deploy credentials: each names its joinKey with a joinSecret or a
   * joinHash (EINVAL otherwise, before anything is deployed). localExec() checks them the same
   * way and then ignores them: a local run has no other workers.
   */
  #computeGroupCredentials(): ComputeGroupCredential[] {
    if (this.computeGroups.length > ComputeGroupLimits.maxGroupsPerJob) {
      throw new CommuneError(ErrorCode.EINVAL, `a job runs in at most ${ComputeGroupLimits.maxGroupsPerJob} compute groups (maxGroupsPerJob)`);
    }
    return this.computeGroups.map((group, i) => {
      const credential = group.joinSecret !== undefined ? { joinKey: group.joinKey, joinSecret: group.joinSecret } : { joinKey: group.joinKey, joinHash: group.joinHash };
      const parsed = ComputeGroupCredentialSchema.safeParse(credential);
      if (!parsed.success) {
        throw new CommuneError(ErrorCode.EINVAL, `computeGroups[${i}] needs a joinKey and a joinSecret (or joinHash): ${parsed.error.issues.map((issue) => issue.message).join('; ')}`);
      }
      return parsed.data;
    });
  }

  #endFromOutside(status: RunSnapshot): void {
    this.#endSink?.onEnd(status);
  }

  #emitCancelOnce(): void {
    if (this.#cancelEmitted) return;
    this.#cancelEmitted = true;
    this.emit('cancel');
  }

  // ------------------------------------------------------------------ localExec

  /**
   * Runs the job in `cores` local sandboxes (false: one), with no scheduler, emitting the same
   * events as exec() and resolving with the same kind of result handle.
   */
  localExec(cores: number | boolean = 1): Promise<ResultHandle> {
    if (this.#active) return Promise.reject(new CommuneError(ErrorCode.EJOBSTATE, 'this job is already running'));
    if (this.#resumeOf !== undefined) return Promise.reject(new CommuneError(ErrorCode.EJOBSTATE, 'a resumed job runs on its scheduler: use exec()'));
    const sandboxes = typeof cores === 'boolean' ? 1 : cores;
    if (!Number.isInteger(sandboxes) || sandboxes < 1 || sandboxes > maxLocalCores) {
      return Promise.reject(new CommuneError(ErrorCode.EINVAL, `localExec(cores): cores is false or an integer from 1 to ${maxLocalCores}, not ${String(cores)}`));
    }
    try {
      this.#checkNoModulesOrGroups();
    } catch (error) {
      return Promise.reject(error);
    }
    this.#setReadyState('exec');
    return this.#execLocal(sandboxes);
  }

  async #execLocal(cores: number): Promise<ResultHandle> {
    this.#active = true;
    try {
      this.#setReadyState('init');
      await this.#loadWork();
      const prepared = prepare(this.#definition, await this.#bundleModules());
      const run = this.#beginRun(prepared, prepared.total);
      run.jobId = newId('j');
      this.id = run.jobId;
      this.receipt = undefined;
      this.readToken = undefined;
      if (prepared.total === 0) return await this.#finish(run, { runStatus: 'finished', total: 0, distributed: 0, computed: 0, failure: null });
      this.status.total = prepared.total;
      this.status.runStatus = 'running';
      const sink = this.#makeSink(run, () => undefined);
      // Started before `accepted` is emitted, so a listener can cancel() it; its first events
      // come after the sandbox module loads, so they cannot beat `accepted`.
      const localRun = startLocalRun({
        jobId: run.jobId,
        work: prepared.work,
        arguments: prepared.arguments,
        inputSet: prepared.inputSet,
        public: this.public,
        cores,
        sink,
        // As the scheduler's dispatch: a multi-range datum is the tuple of work's arguments.
        spreadDatum: prepared.descriptor.kind === 'multi',
        limits: this.#context.localExec,
        modules: sandboxModulesOf(prepared.modules),
        // spec "Shared State": the client arbitrates a local run's state, starting from job.state.
        initialState: this.#initialState().state,
      });
      this.#state.version = 0;
      this.#localRun = localRun;
      try {
        this.emit('accepted', acceptedEventOf(this as Job, this.#deployedBody(prepared)) satisfies AcceptedEvent);
        this.#setReadyState('deployed');
        this.#emitStatus();
      } catch (error) {
        localRun.cancel();
        await localRun.done;
        throw error;
      }
      const final = await localRun.done;
      this.#ending = true;
      return await this.#finish(run, final);
    } finally {
      this.#localRun = undefined;
      this.#active = false;
    }
  }
}

interface RunState {
  jobId: string | undefined;
  /** Set for a run on a scheduler: where results can be fetched from. */
  link: SchedulerLink | undefined;
  store: ResultStore;
}

/** ENOFUNDS's fundsRequired (smallest units on the wire) in DCC; undefined when the scheduler did not say. */
function fundsRequiredOf(failure: { fundsRequired?: string } | null | undefined): string | undefined {
  return failure?.fundsRequired === undefined ? undefined : unitsToDcc(failure.fundsRequired);
}

function inSliceRange(range: Required<SliceRange>, sliceIndex: number): boolean {
  return sliceIndex >= range.start && sliceIndex <= range.end && (sliceIndex - range.start) % range.step === 0;
}
