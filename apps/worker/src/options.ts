import { parseArgs } from 'node:util';
import { z } from 'zod';
import { AddressSchema, ComputeGroupCredentialSchema, ComputeGroupLimits, type ComputeGroupCredential } from '@commune/protocol';

/** What the worker runs with, after flags, config file, environment and defaults are merged. */
export interface WorkerOptions {
  /**
   * Scheduler base URLs (replicas of one scheduler, or one load balancer), in order, without
   * duplicates: the worker connects to `${url}/worker` of one at a time and moves to the next
   * when its replica drains or dies.
   */
  schedulers: string[];
  sandboxes: number;
  /** Checksummed address paid for this worker's slices. */
  earnings?: string;
  /** The least DCC per slice this worker works for (decimal string, '0' = any job); sent in the hello. */
  minWage: string;
  /** The bank's base URL: with `earnings`, the worker shows the earnings account's balance. */
  bank?: string;
  quiet: boolean;
  json: boolean;
  /** Compute groups to join (join key + secret); the scheduler refuses the connection if one is wrong. */
  computeGroups: ComputeGroupCredential[];
  /** false: run only the jobs of `computeGroups`, none of the public group's. */
  publicGroup: boolean;
}

export type ParsedCommandLine =
  | { kind: 'run'; options: WorkerOptions }
  | { kind: 'help'; text: string }
  | { kind: 'error'; message: string };

export interface OptionSources {
  env: Record<string, string | undefined>;
  /** Reads the --config file (injected so tests need no files). */
  readFile: (path: string) => string;
  /** Default --sandboxes: os.availableParallelism(). */
  defaultSandboxes: number;
}

export const defaultSchedulerUrl = 'http://localhost:4000';
/** WorkerHello allows at most this many sandboxes. */
export const maxSandboxes = 1024;
/** Scheduler URLs one worker may be given (--scheduler, the config file, COMMUNE_SCHEDULER_URL). */
export const maxSchedulerUrls = 16;
/** Characters of one scheduler URL. */
export const maxSchedulerUrlChars = 2048;

const SchedulerUrlSchema = z
  .string()
  .max(maxSchedulerUrlChars, `longer than ${maxSchedulerUrlChars} characters`)
  .refine(
    (text) => {
      try {
        return ['http:', 'https:', 'ws:', 'wss:'].includes(new URL(text).protocol);
      } catch {
        return false;
      }
    },
    { message: 'must be an http(s) or ws(s) URL' },
  )
  .transform((text) => text.replace(/\/+$/, ''));

/**
 * One or several scheduler URLs: a comma-separated string, or (in the config file) a list of
 * them. Each is checked; duplicates are dropped; the order is kept (the worker starts with the
 * first). Bounded before anything is split: at most maxSchedulerUrls URLs of
 * maxSchedulerUrlChars each.
 */
export const SchedulerListSchema = z
  .union([z.string(), z.array(z.string()).min(1).max(maxSchedulerUrls)])
  .superRefine((given, context) => {
    const texts = Array.isArray(given) ? given : [given];
    if (texts.some((text) => text.length > maxSchedulerUrls * (maxSchedulerUrlChars + 1))) {
      context.addIssue({ code: 'custom', message: `at most ${maxSchedulerUrls} URLs of ${maxSchedulerUrlChars} characters` });
    }
  })
  .transform((given, context) => {
    const texts = (Array.isArray(given) ? given : [given]).flatMap((text) => text.split(',')).map((text) => text.trim());
    if (texts.length > maxSchedulerUrls) {
      context.addIssue({ code: 'custom', message: `${texts.length} URLs; at most ${maxSchedulerUrls}` });
      return z.NEVER;
    }
    const urls: string[] = [];
    for (const [i, text] of texts.entries()) {
      if (text === '') {
        context.addIssue({ code: 'custom', message: `entry ${i + 1} is empty` });
        return z.NEVER;
      }
      const parsed = SchedulerUrlSchema.safeParse(text);
      if (!parsed.success) {
        const shown = text.length > 100 ? `${text.slice(0, 100)}...` : text;
        context.addIssue({ code: 'custom', message: `${texts.length > 1 ? `entry ${i + 1} ` : ''}${JSON.stringify(shown)}: ${parsed.error.issues.map((issue) => issue.message).join('; ')}` });
        return z.NEVER;
      }
      if (!urls.includes(parsed.data)) urls.push(parsed.data);
    }
    return urls;
  });

const SandboxesSchema = z.number().int().min(1).max(maxSandboxes);

/** DCC has 18 decimals. */
const dccDecimals = 18;

/**
 * A DCC amount as the hello's decimal string: digits, optionally a point and at most 18 decimals,
 * normalised ('0.50' → '0.5', '007' → '7'). A JSON number in the config file is taken at its
 * decimal form.
 */
const DccSchema = z
  .union([z.string(), z.number().nonnegative().transform((value) => String(value))])
  .transform((text, context) => {
    const match = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
    if (!match || (match[2]?.length ?? 0) > dccDecimals) {
      context.addIssue({ code: 'custom', message: `must be an amount of DCC (like 0.001, at most ${dccDecimals} decimals)` });
      return z.NEVER;
    }
    const whole = match[1]!.replace(/^0+(?=\d)/, '');
    const fraction = (match[2] ?? '').replace(/0+$/, '');
    return fraction ? `${whole}.${fraction}` : whole;
  });

const BankUrlSchema = z
  .string()
  .refine(
    (text) => {
      try {
        return ['http:', 'https:'].includes(new URL(text).protocol);
      } catch {
        return false;
      }
    },
    { message: 'must be an http(s) URL' },
  )
  .transform((text) => text.replace(/\/+$/, ''));

/** The --config file: JSON with the same keys as the flags. */
export const WorkerConfigFileSchema = z
  .object({
    scheduler: SchedulerListSchema.optional(),
    sandboxes: SandboxesSchema.optional(),
    earnings: AddressSchema.optional(),
    minWage: DccSchema.optional(),
    bank: BankUrlSchema.optional(),
    quiet: z.boolean().optional(),
    json: z.boolean().optional(),
    computeGroups: z.array(ComputeGroupCredentialSchema).max(ComputeGroupLimits.maxGroupsPerWorker).optional(),
    publicGroup: z.boolean().optional(),
  })
  .strict();
export type WorkerConfigFile = z.infer<typeof WorkerConfigFileSchema>;

export function usage(defaultSandboxes: number): string {
  return `Usage: commune-worker [options]

Runs work for a Commune scheduler in sandboxed V8 isolates, and shows what it is doing.

Options:
  --scheduler URL[,URL...]
                       scheduler to work for: one URL, or several replicas of one scheduler
                       (comma-separated or repeated, at most ${maxSchedulerUrls}); the worker uses one
                       at a time and moves to the next, round robin, when its replica shuts
                       down or cannot be reached, keeping the slices it holds
                       (default: $COMMUNE_SCHEDULER_URL, likewise a list, or ${defaultSchedulerUrl})
  --sandboxes N        sandboxes run at once (default: ${defaultSandboxes}, the available parallelism)
  --earnings ADDRESS   Ethereum address that earns the payment for this worker's slices
                       (without it the worker gets free jobs only)
  --min-wage DCC       work only on jobs that offer at least this many DCC per slice (default: 0)
  --bank URL           bank to show the earnings balance from, with --earnings
                       (default: $COMMUNE_BANK_URL, else none)
  --config FILE        JSON file with any of the keys scheduler (a URL or a list of URLs),
                       sandboxes, earnings, minWage, bank, quiet, json, computeGroups
                       ([{joinKey, joinSecret}]), publicGroup; flags override the file, the
                       file overrides the environment
  --join KEY:SECRET    join the compute group KEY with its join secret (repeatable); the
                       scheduler refuses the worker if a key or secret is wrong
  --no-public-group    run only jobs of the joined compute groups, none of the public group's
  --quiet              log warnings and errors only
  --json               log one JSON object per line
  -h, --help           show this help

One SIGINT or SIGTERM returns unstarted slices, lets running ones finish (at most 20 s),
sends their results and exits; a second one exits at once.
`;
}

/** Parses argv (without node and script) into options, a help request or an error message. */
export function parseCommandLine(argv: string[], sources: OptionSources): ParsedCommandLine {
  let values: {
    help?: boolean;
    scheduler?: string[];
    sandboxes?: string;
    earnings?: string;
    'min-wage'?: string;
    bank?: string;
    config?: string;
    quiet?: boolean;
    json?: boolean;
    join?: string[];
    'no-public-group'?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        help: { type: 'boolean', short: 'h' },
        scheduler: { type: 'string', multiple: true },
        sandboxes: { type: 'string' },
        earnings: { type: 'string' },
        'min-wage': { type: 'string' },
        bank: { type: 'string' },
        config: { type: 'string' },
        quiet: { type: 'boolean' },
        json: { type: 'boolean' },
        join: { type: 'string', multiple: true },
        'no-public-group': { type: 'boolean' },
      },
    }));
  } catch (error) {
    return { kind: 'error', message: error instanceof Error ? error.message : String(error) };
  }
  if (values.help) return { kind: 'help', text: usage(sources.defaultSandboxes) };

  let file: WorkerConfigFile = {};
  if (values.config !== undefined) {
    let text: string;
    try {
      text = sources.readFile(values.config);
    } catch (error) {
      return { kind: 'error', message: `cannot read config file ${values.config}: ${error instanceof Error ? error.message : String(error)}` };
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      return { kind: 'error', message: `config file ${values.config} is not JSON: ${error instanceof Error ? error.message : String(error)}` };
    }
    const parsed = WorkerConfigFileSchema.safeParse(raw);
    if (!parsed.success) return { kind: 'error', message: `config file ${values.config}: ${describeIssues(parsed.error)}` };
    file = parsed.data;
  }

  let schedulers = file.scheduler;
  if (values.scheduler !== undefined || schedulers === undefined) {
    const [source, text] = values.scheduler !== undefined
      ? ['--scheduler', values.scheduler.join(',')]
      : sources.env.COMMUNE_SCHEDULER_URL !== undefined && sources.env.COMMUNE_SCHEDULER_URL.trim() !== ''
        ? ['COMMUNE_SCHEDULER_URL', sources.env.COMMUNE_SCHEDULER_URL]
        : ['the default scheduler', defaultSchedulerUrl];
    const parsed = SchedulerListSchema.safeParse(text);
    if (!parsed.success) return { kind: 'error', message: `${source} ${text.length > 200 ? `${text.slice(0, 200)}...` : text}: ${describeIssues(parsed.error)}` };
    schedulers = parsed.data;
  }

  let sandboxes = file.sandboxes ?? Math.max(1, Math.min(maxSandboxes, sources.defaultSandboxes));
  if (values.sandboxes !== undefined) {
    const parsed = /^\d+$/.test(values.sandboxes.trim()) ? SandboxesSchema.safeParse(Number(values.sandboxes)) : null;
    if (!parsed?.success) return { kind: 'error', message: `--sandboxes ${values.sandboxes}: must be a whole number from 1 to ${maxSandboxes}` };
    sandboxes = parsed.data;
  }

  let earnings = file.earnings;
  if (values.earnings !== undefined) {
    const parsed = AddressSchema.safeParse(values.earnings);
    if (!parsed.success) return { kind: 'error', message: `--earnings ${values.earnings}: not an Ethereum address` };
    earnings = parsed.data;
  }

  let minWage = file.minWage ?? '0';
  if (values['min-wage'] !== undefined) {
    const parsed = DccSchema.safeParse(values['min-wage']);
    if (!parsed.success) return { kind: 'error', message: `--min-wage ${values['min-wage']}: ${describeIssues(parsed.error)}` };
    minWage = parsed.data;
  }

  let bank = file.bank;
  const bankText = values.bank ?? (file.bank === undefined ? sources.env.COMMUNE_BANK_URL : undefined);
  if (bankText !== undefined && bankText !== '') {
    const parsed = BankUrlSchema.safeParse(bankText);
    if (!parsed.success) return { kind: 'error', message: `--bank ${bankText}: ${describeIssues(parsed.error)}` };
    bank = parsed.data;
  }

  const computeGroups = [...(file.computeGroups ?? [])];
  for (const join of values.join ?? []) {
    const colon = join.indexOf(':');
    const parsed = ComputeGroupCredentialSchema.safeParse(colon > 0 ? { joinKey: join.slice(0, colon), joinSecret: join.slice(colon + 1) } : null);
    if (!parsed.success) return { kind: 'error', message: `--join ${join.slice(0, Math.max(colon, 0)) || join}:...: must be KEY:SECRET${colon > 0 ? ` (${describeIssues(parsed.error)})` : ''}` };
    computeGroups.push(parsed.data);
  }
  if (computeGroups.length > ComputeGroupLimits.maxGroupsPerWorker) {
    return { kind: 'error', message: `a worker joins at most ${ComputeGroupLimits.maxGroupsPerWorker} compute groups (maxGroupsPerWorker)` };
  }
  const publicGroup = values['no-public-group'] ? false : file.publicGroup ?? true;
  if (!publicGroup && computeGroups.length === 0) return { kind: 'error', message: '--no-public-group needs at least one --join: the worker would never get work' };

  const options: WorkerOptions = {
    schedulers,
    computeGroups,
    publicGroup,
    sandboxes,
    minWage,
    quiet: values.quiet ?? file.quiet ?? false,
    json: values.json ?? file.json ?? false,
  };
  if (earnings !== undefined) options.earnings = earnings;
  if (bank !== undefined) options.bank = bank;
  return { kind: 'run', options };
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => (issue.path.length ? `${issue.path.join('.')}: ${issue.message}` : issue.message)).join('; ');
}
