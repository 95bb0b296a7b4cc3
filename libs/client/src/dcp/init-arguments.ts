import { CommuneError, ErrorCode } from '@commune/protocol';
import type { InitOptions } from '../init.js';

/** A dcpConfig-shaped fragment, as DCP programs give init(): `{ scheduler: { location }, bank: { location } }`. */
export interface DcpConfigFragment {
  scheduler?: { location?: string | URL };
  bank?: { location?: string | URL };
}

/** What init() was given, in any of Commune's or DCP's forms. */
export type InitArgument = InitOptions | string | URL | ReadonlyArray<string | URL>;

function fail(message: string): never {
  throw new CommuneError(ErrorCode.EINVAL, message);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof URL);
}

/**
 * `{ location }` -> location; anything else as it is (init checks the URLs). In a dcpConfig
 * fragment a node without `location` (`{ scheduler: { configLocation: false } }`) names nothing.
 */
function locationOf<T>(what: string, value: unknown, inFragment: boolean): T | undefined {
  if (!isPlainObject(value)) return value as T;
  if (!('location' in value)) {
    if (inFragment) return undefined;
    return fail(`init(): ${what} must be a URL, a URL string or { location: URL }, not an object without location`);
  }
  const location = value.location;
  if (location === undefined) return undefined;
  if (typeof location !== 'string' && !(location instanceof URL)) return fail(`init(): ${what}.location must be a URL or a URL string`);
  return location as T;
}

function fragmentOf(what: string, value: unknown): DcpConfigFragment {
  if (value === undefined) return {};
  if (!isPlainObject(value)) fail(`init(): ${what} must be a dcpConfig object ({ scheduler: { location } })`);
  return value as DcpConfigFragment;
}

/**
 * init()'s arguments as InitOptions whose `scheduler` and `bank` are plain URLs (or undefined).
 * Commune's forms: init(), init(url | [urls]), init(options). dcp-client's (5.6.1 handleInitArgs):
 * init(url string), init(URL), init(options) where options may hold `scheduler` (a URL or URL
 * string), `dcpConfig` ({ scheduler: { location }, bank: { location } }) and DCP's loader options
 * (parseArgv, programName, autoUpdate, bundleLocation, configName, reportErrors,
 * enableSourceMaps, which change nothing here: Commune has no bundle or config files to load),
 * and the deprecated init(dcpConfig, options). A dcpConfig-shaped object given directly
 * (`init({ scheduler: { location } })`) is taken as such too. The scheduler named by `scheduler`
 * wins over the one in `dcpConfig`, as in dcp-client.
 */
export function initOptionsOf(first: unknown, second: unknown): InitOptions {
  if (second !== undefined) {
    // dcp-client form 4 (deprecated): init(dcpConfig, options)
    const fragment = fragmentOf('the first of two arguments', first);
    if (!isPlainObject(second)) fail('init(dcpConfig, options): options must be an object');
    return initOptionsOf({ ...second, dcpConfig: { ...fragment, ...fragmentOf('options.dcpConfig', second.dcpConfig) } }, undefined);
  }
  if (first === undefined || first === null) return {};
  if (typeof first === 'string' || first instanceof URL || Array.isArray(first)) return { scheduler: first as InitOptions['scheduler'] };
  if (!isPlainObject(first)) return fail(`init() takes a scheduler URL, a URL string, an array of them or an options object, not ${typeof first}`);
  const options = first as InitOptions & { dcpConfig?: unknown };
  const fragment = fragmentOf('options.dcpConfig', options.dcpConfig);
  type Scheduler = InitOptions['scheduler'];
  type Bank = InitOptions['bank'];
  const scheduler = locationOf<Scheduler>('scheduler', options.scheduler, false) ?? locationOf<Scheduler>('dcpConfig.scheduler', fragment.scheduler, true);
  const bank = locationOf<Bank>('bank', options.bank, false) ?? locationOf<Bank>('dcpConfig.bank', fragment.bank, true);
  const settings: InitOptions = { ...options, scheduler, bank };
  delete (settings as { dcpConfig?: unknown }).dcpConfig;
  return settings;
}
