/**
 * Named limits with the error code each one raises. Services read overrides from their
 * environment; these are the defaults and the values the SDK checks before it deploys.
 */
export const Limits = {
  /** Work function source plus arguments plus the job's module sources (job.requires()), bytes. -> EWORKTOOBIG */
  maxWorkBytes: 1024 * 1024,
  /** Modules (files) one job may bring with job.requires(), its packages' files included. -> EINVAL */
  maxModulesPerJob: 2000,
  /**
   * Serialized input set of an array/iterable job, bytes: what one deploy message carries
   * (maxMessageBytes) with room for the work (maxWorkBytes). Larger sets are described with a
   * range, or split into several jobs. -> ETOOBIG (the SDK checks before it sends)
   */
  maxInputSetBytes: 3 * 1024 * 1024 - 64 * 1024,
  /** Slices in one job. -> ETOOMANYTASKS */
  maxSlicesPerJob: 2 ** 50,
  /** Slices handed out in one task. */
  maxSlicesPerTask: 1000,
  /**
   * Slices one worker connection may hold leased (awaiting results) per sandbox it declared. -> ELEASECAP
   * Its cap also follows its observed rate: it starts at initialLeasedSlicesPerWorker and grows
   * by two for each result of it the scheduler accepted, up to sandboxes x this.
   */
  maxLeasedSlicesPerSandbox: 2048,
  /** Slices a worker connection may hold leased before any of its results was accepted. -> ELEASECAP */
  initialLeasedSlicesPerWorker: 1000,
  /** Serialized result of one slice, bytes. -> ERESULTTOOBIG */
  maxResultBytes: 1024 * 1024,
  /** A slice that reports no progress for this long is stopped. -> ENOPROGRESS */
  progressTimeoutMs: 30_000,
  /** A slice that runs longer than this is stopped. -> ESLICETOOSLOW */
  sliceTimeLimitMs: 300_000,
  /** Sandbox heap, MiB. -> ESANDBOXMEMORY */
  sandboxMemoryMb: 128,
  /** Slice failures (work function errors, no progress, memory) before the job is cancelled. -> ETOOMANYERRORS */
  maxSliceErrorsPerJob: 100,
  /** Failures of one slice before the job is cancelled with that slice's error. */
  maxAttemptsPerSlice: 3,
  /** A task lease lasts this long before its slices are put back. */
  leaseTimeoutMs: 60_000,
  /** How far from now a signed request's expiry may lie. -> EEXPIRED */
  maxSignatureLifetimeMs: 10 * 60_000,
  /** Results per page of GET /jobs/:id/results. */
  maxResultsPerPage: 10_000,
  /**
   * Largest socket.io message or REST body, bytes: refused by the transport before it is parsed.
   * Sized so that a 128 MB-heap scheduler holds a few dozen in flight at once. -> ETOOBIG
   */
  maxMessageBytes: 4 * 1024 * 1024,
  /**
   * Bytes of large socket.io messages (over largeMessageBytes) one scheduler handles at once, all
   * connections together; one connection's large messages in flight stay within maxMessageBytes
   * (one near-limit message at a time). A large
   * message over either is answered EUNAVAILABLE (try again) and dropped, so that concurrent
   * near-limit messages cannot exhaust a 128 MB heap. -> EUNAVAILABLE
   */
  maxLargeMessageBytesInFlight: 12 * 1024 * 1024,
  /** A socket.io message at least this large counts against maxLargeMessageBytesInFlight. */
  largeMessageBytes: 64 * 1024,
  /** Nesting of arrays and objects in any inbound value (messages, bodies, results, events, sandbox output). -> ETOODEEP */
  maxValueDepth: 128,
  /** Values (array items, object members, scalars) in any one inbound message. -> ETOOBIG */
  maxValueNodes: 1_000_000,
  /** Range objects in one multi-range object (compute.for form 3), i.e. nested loops. -> EINVAL */
  maxRangesPerMultiRange: 32,
  /** Range objects in one sparse range object. -> EINVAL */
  maxRangesPerSparseRange: 10_000,
  /** Range objects in the slice set of one results.list/delete/fetch/stat request. -> EINVAL */
  maxSliceRangesPerRequest: 256,
  /** Runs of computed slices per page of results.list. */
  maxSliceRunsPerPage: 10_000,
  /** Slices per page of getSliceInfo and of results.stat. */
  maxSliceInfoPerPage: 1000,
  /** Jobs in one answer of compute.status(paymentAccount, startTime, endTime). */
  maxJobsPerStatusList: 500,
  /** How long a WorkValueQuote from compute.getMarketValue() stays firm. */
  quoteLifetimeMs: 10 * 60_000,
  /** A job's shared state (job.state / worker.state) as state text, UTF-8 bytes. -> ESTATETOOBIG */
  maxStateBytes: 64 * 1024,
  /** Functions in one appliance version. -> EINVAL */
  maxFunctionsPerAppliance: 100,
  /** Published versions of one appliance. -> ETOOBIG */
  maxVersionsPerAppliance: 10_000,
} as const;
export type LimitName = keyof typeof Limits;
