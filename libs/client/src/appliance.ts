import {
  ApplianceFunctionNameSchema,
  ApplianceFunctionSourceSchema,
  ApplianceNameSchema,
  ApplianceSpecSchema,
  ApplianceVersionInfoSchema,
  CommuneError,
  ErrorCode,
  ErrorReplySchema,
  hashOf,
  Limits,
  newId,
  PublishApplianceReplySchema,
  SignedKind,
  signRequest,
  SliceProfileSchema,
  type ApplianceFunctionInfo,
  type ApplianceJobRef,
  type ApplianceMetadata,
  type ApplianceVersionInfo,
  type PublishApplianceReply,
  type SliceProfile,
} from '@commune/protocol';
import type { ParsedForm, WorkFunction } from './compute.js';
import { replyError } from './connection.js';
import { Job, type JobContext, type JobSigner } from './job.js';

/**
 * spec "Appliance Handles": `new compute.Appliance(name, version, publishKeystore)` defines and
 * publishes a version of an appliance (a named, versioned set of work functions);
 * `new compute.Appliance(name, versionRange)` uses a published one: `appliance.for(...)` and
 * `appliance.do(...)` take the function's name where compute.for / compute.do take a work
 * function, and return ordinary job handles. Their first exec(), localExec() or estimate()
 * resolves the version on the scheduler and fetches the function's source; exec() deploys that
 * source, signed as any job, with `appliance: {versionId, function}`, and the scheduler checks the
 * source is the published one.
 */

/** spec defineFunction(): what was defined, kept until publish(). Its requirePath / modulePath are captured by publish(). */
export interface ApplianceFunctionDefinition {
  readonly name: string;
  /** The work function's source, as it is published. */
  readonly workSource: string;
  /** The estimation function's source (spec "Estimation Functions"), when one was given. */
  readonly estimationSource: string | undefined;
  /** The baseSliceProfile of the estimation function. */
  readonly sliceProfile: Partial<SliceProfile> | undefined;
  requirePath: string[];
  modulePath: string[];
}

/** What publish() resolves with (spec: versionId, receipt, cost). */
export interface PublishResult {
  versionId: string;
  receipt: string;
  /** DCC debited: publication is free in Commune, so '0'. */
  cost: string;
  /** The appliance's id (the same for every version). */
  id: string;
  name: string;
  version: string;
  publishedAt: Date;
}

/**
 * compute.for / compute.do's argument parsing, handed in by the compute module (so this module
 * does not import compute.ts, which imports it).
 */
export interface ApplianceForms {
  parseForArguments(params: unknown[]): ParsedForm;
  parseDoArguments(params: unknown[]): ParsedForm;
  workSourceOf(work: unknown): string;
}

/** What an appliance handle needs: the compute module's context and its argument parsing. */
export interface ApplianceContext extends JobContext {
  readonly forms: ApplianceForms;
}

function invalid(message: string): never {
  throw new CommuneError(ErrorCode.EINVAL, message);
}

function isSigner(value: unknown): value is JobSigner {
  const signer = value as JobSigner | null | undefined;
  return typeof signer?.getAddress === 'function' && typeof signer?.signMessage === 'function';
}

const metadataKeys = ['name', 'description', 'author', 'organization', 'email', 'website', 'hashTags'] as const;

/** The appliance handle class, before it is bound to a compute module (compute.Appliance binds it). */
export class Appliance {
  /** The unique name the appliance is published under (the constructor's applianceName). */
  readonly applianceName: string;
  /** Form 2: the version asked for (an npm range or "#versionId"). */
  readonly versionRange: string | undefined;
  /** Form 1: the version being defined; form 2: the version resolved (after resolve() or a job's first run). */
  version: string | undefined;
  /** spec: the scheduler's id of this appliance (same for every version); known after publish() or resolve(). */
  id: string | undefined;
  /** spec: the scheduler's id of this version; known after publish() or resolve(). */
  versionId: string | undefined;
  /** publish()'s receipt. */
  receipt: string | undefined;
  /** The address that publishes (form 1) or published (form 2, after resolve()) the appliance. */
  publisher: string | undefined;
  // spec "Properties": optional public metadata, published with each version.
  /** Human-readable name; the applianceName unless set. */
  name: string;
  description: string | undefined;
  author: string | undefined;
  organization: string | undefined;
  email: string | undefined;
  website: string | undefined;
  /** Comma-separated tags. */
  hashTags: string | undefined;
  /** spec: captured by publish(), pushed on to require.path before each function's own. */
  requirePath: string[] = [];
  /** Form 2, after resolve(): the published functions (without sources). */
  functions: ApplianceFunctionInfo[] | undefined;

  readonly #context: ApplianceContext;
  readonly #publishKeystore: JobSigner | undefined;
  readonly #definitions = new Map<string, ApplianceFunctionDefinition>();
  #publishing: Promise<PublishResult> | undefined;
  #resolving: Promise<ApplianceVersionInfo> | undefined;

  constructor(context: ApplianceContext, applianceName: string, version?: string, publishKeystore?: JobSigner) {
    const parsedName = ApplianceNameSchema.safeParse(applianceName);
    if (!parsedName.success) invalid(`appliance name ${JSON.stringify(applianceName)}: ${parsedName.error.issues[0]?.message}`);
    this.#context = context;
    this.applianceName = parsedName.data;
    this.name = parsedName.data;
    if (publishKeystore !== undefined) {
      // form 1: preparing to publish
      if (!isSigner(publishKeystore)) invalid('publishKeystore must be a wallet (a signer with getAddress and signMessage), e.g. await wallet.get()');
      if (typeof version !== 'string' || version.trim() === '') invalid('new Appliance(name, version, publishKeystore): version is a string such as "1.0.0"');
      this.#publishKeystore = publishKeystore;
      this.version = version;
    } else {
      // form 2: a published appliance; no version means the highest published one
      if (version !== undefined && typeof version !== 'string') invalid('new Appliance(name, version): version is an npm version range ("^1.0.0") or "#versionId"');
      this.versionRange = version ?? '*';
    }
  }

  /**
   * spec defineFunction(name, work, estimationFunction, sliceProfile) (form 1, before publish()).
   * Returns the definition (see ApplianceFunctionDefinition) rather than a JobHandle: a function
   * can run only once published, through appliance.for / appliance.do.
   */
  defineFunction(name: string, work: WorkFunction, estimationFunction?: WorkFunction, sliceProfile?: Partial<SliceProfile>): ApplianceFunctionDefinition {
    if (!this.#publishKeystore) throw new CommuneError(ErrorCode.EPERM, 'defineFunction() belongs to an appliance being published: new compute.Appliance(name, version, publishKeystore)');
    if (this.#publishing) throw new CommuneError(ErrorCode.EPERM, 'the appliance is published: define functions in a new version');
    const parsedName = ApplianceFunctionNameSchema.safeParse(name);
    if (!parsedName.success) invalid(`function name ${JSON.stringify(name)}: ${parsedName.error.issues[0]?.message}`);
    if (this.#definitions.has(parsedName.data)) invalid(`the function "${parsedName.data}" is already defined`);
    let profile: Partial<SliceProfile> | undefined;
    if (sliceProfile !== undefined && sliceProfile !== null) {
      const parsedProfile = SliceProfileSchema.partial().safeParse(sliceProfile);
      if (!parsedProfile.success) invalid(`sliceProfile: ${parsedProfile.error.issues[0]?.message}`);
      profile = parsedProfile.data;
    }
    const definition: ApplianceFunctionDefinition = {
      name: parsedName.data,
      workSource: this.#context.forms.workSourceOf(work),
      estimationSource: estimationFunction === undefined || estimationFunction === null ? undefined : this.#context.forms.workSourceOf(estimationFunction),
      sliceProfile: profile,
      requirePath: [],
      modulePath: [],
    };
    this.#definitions.set(definition.name, definition);
    return definition;
  }

  /**
   * spec publish(): signs this version (every function, the metadata, requirePath) with the
   * publishKeystore and publishes it on the scheduler. Rejects with ENAMESPACE (the name is another
   * key's), EEXIST (this version exists), EWORKTOOBIG (the functions together exceed
   * Limits.maxWorkBytes), EINVAL (not a semantic version, no functions). Calling it again returns
   * the same promise.
   */
  publish(): Promise<PublishResult> {
    if (!this.#publishKeystore) return Promise.reject(new CommuneError(ErrorCode.EPERM, 'only an appliance made with a publishKeystore can be published'));
    this.#publishing ??= this.#publish(this.#publishKeystore);
    const publishing = this.#publishing;
    // A publication the scheduler refused can be fixed and published again.
    publishing.catch(() => {
      if (this.#publishing === publishing) this.#publishing = undefined;
    });
    return publishing;
  }

  async #publish(signer: JobSigner): Promise<PublishResult> {
    if (this.#definitions.size === 0) invalid('define at least one function before publish()');
    const functions = [...this.#definitions.values()].map((fn) => ({
      name: fn.name,
      work: fn.workSource,
      ...(fn.estimationSource === undefined ? {} : { estimation: fn.estimationSource }),
      ...(fn.sliceProfile === undefined ? {} : { sliceProfile: fn.sliceProfile }),
      ...(fn.requirePath.length > 0 ? { requirePath: [...fn.requirePath] } : {}),
      ...(fn.modulePath.length > 0 ? { modulePath: [...fn.modulePath] } : {}),
    }));
    const bytes = functions.reduce((sum, fn) => sum + Buffer.byteLength(fn.work) + Buffer.byteLength(fn.estimation ?? ''), 0);
    if (bytes > Limits.maxWorkBytes) {
      throw new CommuneError(ErrorCode.EWORKTOOBIG, `the appliance's functions are ${bytes} bytes together; the limit is ${Limits.maxWorkBytes}`);
    }
    const metadata: ApplianceMetadata = {};
    for (const key of metadataKeys) if (typeof this[key] === 'string') metadata[key] = this[key];
    const publisher = await signer.getAddress();
    const issuedAt = Date.now();
    const parsed = ApplianceSpecSchema.safeParse({
      name: this.applianceName,
      version: this.version,
      publisher,
      metadata,
      ...(this.requirePath.length > 0 ? { requirePath: [...this.requirePath] } : {}),
      functions,
      nonce: newId('n'),
      issuedAt,
      expiresAt: issuedAt + Limits.maxSignatureLifetimeMs / 2,
    });
    if (!parsed.success) throw new CommuneError(ErrorCode.EINVAL, `the appliance is not valid: ${parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ')}`);
    const spec = parsed.data;
    const body = { appliance: spec, signature: await signRequest(signer, SignedKind.appliance, spec) };
    const reply = PublishApplianceReplySchema.safeParse(await this.#post('appliances', body));
    if (!reply.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed publish reply: ${reply.error.message}`);
    return this.#published(reply.data, publisher);
  }

  #published(reply: PublishApplianceReply, publisher: string): PublishResult {
    this.id = reply.applianceId;
    this.versionId = reply.versionId;
    this.receipt = reply.receipt;
    this.publisher = publisher;
    return {
      versionId: reply.versionId,
      receipt: reply.receipt,
      cost: reply.cost,
      id: reply.applianceId,
      name: reply.name,
      version: reply.version,
      publishedAt: new Date(reply.publishedAt),
    };
  }

  /**
   * spec refund(): un-publish and refund the publication fee. Commune charges no fee (publish()'s
   * cost is '0') and keeps every published version, so there is nothing to refund: EPERM.
   */
  async refund(_published?: unknown): Promise<never> {
    throw new CommuneError(ErrorCode.EPERM, 'publication is free in Commune and published versions stay: there is nothing to refund');
  }

  /**
   * Resolves the version this handle uses on the scheduler (the highest published version within
   * versionRange, or "#versionId"; after publish(), the published one) and fills id, versionId,
   * version, publisher, functions and the metadata. Done once per handle: every job from it runs
   * the same version. ENOTFOUND when nothing published matches.
   */
  resolve(): Promise<ApplianceVersionInfo> {
    this.#resolving ??= this.#resolve();
    const resolving = this.#resolving;
    resolving.catch(() => {
      if (this.#resolving === resolving) this.#resolving = undefined;
    });
    return resolving;
  }

  async #resolve(): Promise<ApplianceVersionInfo> {
    if (this.#publishKeystore && this.#publishing) await this.#publishing;
    const selector = this.versionId !== undefined ? `#${this.versionId}` : this.versionRange;
    if (selector === undefined) throw new CommuneError(ErrorCode.EJOBSTATE, 'publish() this appliance before running its functions');
    const query = new URLSearchParams({ version: selector });
    const info = ApplianceVersionInfoSchema.safeParse(await this.#context.link().rest('GET', `appliances/${encodeURIComponent(this.applianceName)}?${query}`));
    if (!info.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed appliance description: ${info.error.message}`);
    const version = info.data;
    this.id = version.applianceId;
    this.versionId = version.versionId;
    this.version = version.version;
    this.publisher = version.publisher;
    this.functions = version.functions;
    this.requirePath = [...version.requirePath];
    if (!this.#publishKeystore) {
      this.name = version.metadata.name ?? this.applianceName;
      for (const key of metadataKeys) if (key !== 'name') this[key] = version.metadata[key];
    }
    return version;
  }

  /** The source of one function of the resolved version, checked against the hash the scheduler published. */
  async #functionSource(functionName: string): Promise<{ work: string; appliance: ApplianceJobRef }> {
    const version = await this.resolve();
    const published = version.functions.find((fn) => fn.name === functionName);
    if (!published) {
      throw new CommuneError(ErrorCode.ENOTFOUND, `${this.applianceName}@${version.version} has no function "${functionName}" (it has ${version.functions.map((fn) => fn.name).join(', ')})`);
    }
    const path = `appliances/versions/${version.versionId}/functions/${encodeURIComponent(functionName)}`;
    const source = ApplianceFunctionSourceSchema.safeParse(await this.#context.link().rest('GET', path));
    if (!source.success) throw new CommuneError(ErrorCode.ESCHEDULER, `malformed function source: ${source.error.message}`);
    if (hashOf(source.data.work) !== published.workHash) {
      throw new CommuneError(ErrorCode.ESCHEDULER, `the source of "${functionName}" does not match its published hash`);
    }
    return { work: source.data.work, appliance: { versionId: version.versionId, function: functionName } };
  }

  /** A job running `functionName` (its source fetched on the first run). */
  #job(parsed: ParsedForm, what: string): Job {
    // parseForArguments / parseDoArguments put the function name where the work goes.
    const functionName = ApplianceFunctionNameSchema.safeParse(parsed.work);
    if (!functionName.success) invalid(`${what} takes the name of a function of the appliance where compute.${what.split('.')[1]} takes work`);
    return new Job(this.#context, {
      work: '',
      arguments: parsed.arguments,
      inputSet: parsed.inputSet,
      source: () => this.#functionSource(functionName.data),
    });
  }

  /** spec appliance.for: compute.for's forms with a function name instead of work, e.g. for(1, 10, 'square'). */
  for(...params: unknown[]): Job {
    return this.#job(this.#context.forms.parseForArguments(params), 'appliance.for');
  }

  /** spec appliance.do: compute.do's forms with a function name instead of work, e.g. do(3, 'name'). */
  do(...params: unknown[]): Job {
    return this.#job(this.#context.forms.parseDoArguments(params), 'appliance.do');
  }

  async #post(relative: string, body: unknown): Promise<unknown> {
    const url = new URL(relative, this.#context.scheduler);
    let response: Response;
    try {
      response = await fetch(url, {
        method: 'POST',
        headers: { accept: 'application/json', 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(30_000),
      });
    } catch (error) {
      throw new CommuneError(ErrorCode.ESCHEDULER, `POST ${url.href} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    const answer: unknown = await response.json().catch(() => undefined);
    if (!response.ok) {
      const reply = ErrorReplySchema.safeParse({ ok: false, ...(typeof answer === 'object' && answer !== null ? answer : {}) });
      if (reply.success) throw replyError(reply.data);
      throw new CommuneError(ErrorCode.ESCHEDULER, `POST ${url.href} answered ${response.status}`);
    }
    return answer;
  }
}

/** compute.Appliance: the Appliance class bound to a compute module's scheduler and keystore. */
export type ApplianceClass = new (applianceName: string, version?: string, publishKeystore?: JobSigner) => Appliance;

export function applianceClassFor(context: ApplianceContext): ApplianceClass {
  return class extends Appliance {
    constructor(applianceName: string, version?: string, publishKeystore?: JobSigner) {
      super(context, applianceName, version, publishKeystore);
    }
  };
}
