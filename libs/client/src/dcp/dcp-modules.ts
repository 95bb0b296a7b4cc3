import Module, { createRequire, register } from 'node:module';
import { MultiRangeObject, RangeObject, SparseRangeObject } from '@commune/ranges';
import type { Compute } from '../compute.js';
import { stats } from '../stats.js';
import type { DcpConfig } from './dcp-config.js';
import { dcpModuleNameOf, isProvidedDcpModule, providedDcpModules, refusalMessage, refusedDcpModules, type ProvidedDcpModule } from './module-names.js';
import type { DcpWallet } from './wallet.js';

/**
 * `require('dcp/compute')` and the other `dcp/*` names after init(), as dcp-client offers them
 * (it injects its bundle's modules into Node's module cache). Node 20 has no synchronous module
 * hooks (module.registerHooks is Node 22.15+), so:
 * - CommonJS: Module._resolveFilename answers the known `dcp/*` names, and only those, with a
 *   cache id (the name itself, which no file can have) whose Module._cache entry holds the
 *   current init()'s module; a refused name throws MODULE_NOT_FOUND with what Commune offers.
 * - ES modules: module.register() hooks (a loader thread) resolve the same names to
 *   `commune-dcp:<name>` modules that export the current module as default and its properties
 *   by name. Registered by the first init() of a program whose entry is an ES module (or eval /
 *   the REPL): the loader thread costs about 140 ms and 13 MB once, and every later import one
 *   round trip to it (~1 ms), which CommonJS programs (every DCP example but one, and that one
 *   takes its modules from init()'s result) need not pay; they require() the names instead.
 *   Only imports evaluated after init() see them (`await import('dcp/compute')`; a static import
 *   at the top of the entry module is resolved before any code runs). dcp-client itself
 *   resolves `dcp/*` for require() only.
 * Every other request goes to Node untouched.
 */

/** What init() hands over. */
export interface DcpModuleSources {
  compute: Compute;
  wallet: DcpWallet;
  dcpConfig: DcpConfig;
}

declare global {
  var dcpConfig: DcpConfig | undefined;
}

/** dcp-client's dcp/range-object: the range classes (its DistributionRange is compute.stats' distributions here). */
const rangeObjectModule = Object.freeze({ RangeObject, SparseRangeObject, MultiRangeObject });
/** dcp-client's dcp/stats-ranges: `set` (its `distributor` has no equivalent). */
const statsRangesModule = Object.freeze({ set: stats.set });

/** Where the generated ES modules find the current modules (they run in this thread, the hooks in another). */
const registryKey = Symbol.for('@commune/client dcp modules');
type Registry = Map<string, object>;

function registry(): Registry {
  const holder = globalThis as unknown as Record<symbol, Registry | undefined>;
  return (holder[registryKey] ??= new Map());
}

interface ModuleInternals {
  _resolveFilename(this: unknown, request: string, ...rest: unknown[]): string;
  _cache: Record<string, Module | undefined>;
}
const internals = Module as unknown as ModuleInternals;

function cacheEntry(name: ProvidedDcpModule, exports: object): Module {
  const id = `dcp/${name}`;
  const entry = internals._cache[id] ?? new Module(id);
  entry.id = id;
  entry.filename = id;
  entry.loaded = true;
  entry.exports = exports;
  internals._cache[id] = entry;
  return entry;
}

/**
 * What `require('dcp/<name>')` gives after init(): the current module of a provided name; a
 * refused name (or one before any init()) throws MODULE_NOT_FOUND.
 */
export function dcpModuleExports(name: string): object {
  const exports = isProvidedDcpModule(name) ? registry().get(name) : undefined;
  if (exports === undefined) {
    const message = isProvidedDcpModule(name) ? `Cannot find module 'dcp/${name}': call init() from @commune/client (dcp-client) first` : refusalMessage(name);
    throw Object.assign(new Error(message), { code: 'MODULE_NOT_FOUND' });
  }
  return exports;
}

let requireHookInstalled = false;

function installRequireHook(): void {
  if (requireHookInstalled) return;
  requireHookInstalled = true;
  const resolveFilename = internals._resolveFilename;
  internals._resolveFilename = function resolveDcpModules(this: unknown, request: string, ...rest: unknown[]): string {
    const name = dcpModuleNameOf(request);
    if (name === undefined) return resolveFilename.call(this, request, ...rest);
    return cacheEntry(name as ProvidedDcpModule, dcpModuleExports(name)).id;
  };
}

/** The loader-thread hooks, as a data: URL so they load wherever the SDK runs from (dist or sources). */
const importHooksSource = `
let table = { provided: {}, refused: {} };
export async function initialize(data) { table = data; }
const nameOf = (specifier) => {
  if (typeof specifier !== 'string' || !specifier.startsWith('dcp/')) return undefined;
  const name = specifier.slice(4);
  return Object.hasOwn(table.provided, name) || Object.hasOwn(table.refused, name) ? name : undefined;
};
export async function resolve(specifier, context, nextResolve) {
  const name = nameOf(specifier);
  return name === undefined ? nextResolve(specifier, context) : { url: 'commune-dcp:' + name, shortCircuit: true };
}
export async function load(url, context, nextLoad) {
  if (!url.startsWith('commune-dcp:')) return nextLoad(url, context);
  const name = url.slice('commune-dcp:'.length);
  if (Object.hasOwn(table.refused, name)) {
    return { format: 'module', shortCircuit: true, source: 'throw Object.assign(new Error(' + JSON.stringify(table.refused[name]) + '), { code: "ERR_MODULE_NOT_FOUND" });' };
  }
  const lines = ['const m = globalThis[Symbol.for(' + JSON.stringify(table.key) + ')].get(' + JSON.stringify(name) + ');', 'export default m;'];
  table.provided[name].forEach((property, i) => lines.push('const e' + i + ' = m[' + JSON.stringify(property) + ']; export { e' + i + ' as ' + property + ' };'));
  return { format: 'module', shortCircuit: true, source: lines.join('\\n') };
}
`;

let importHooksRegistered = false;

/** Names an ES module can export with `export { x as name }`: IdentifierNames (reserved words included). */
const exportableName = /^[A-Za-z_$][\w$]*$/;

/** True when the program's entry point is an ES module, eval or the REPL (no CommonJS main module). */
function entryIsNotCommonJs(): boolean {
  return createRequire(import.meta.url).main === undefined;
}

function registerImportHooks(modules: Registry): void {
  if (importHooksRegistered || !entryIsNotCommonJs()) return;
  importHooksRegistered = true;
  const provided: Record<string, string[]> = {};
  for (const [name, exports] of modules) provided[name] = Object.keys(exports).filter((key) => exportableName.test(key) && key !== 'default');
  const refused: Record<string, string> = {};
  for (const name of Object.keys(refusedDcpModules)) refused[name] = refusalMessage(name);
  try {
    register(`data:text/javascript,${encodeURIComponent(importHooksSource)}`, { data: { provided, refused, key: registryKey.description } });
  } catch {
    // A host that runs programs in its own module system (Jest's vm modules) refuses
    // module.register(): import('dcp/...') is then not offered there, and require('dcp/...') still is.
  }
}

/**
 * Makes the `dcp/*` names resolve to this init()'s modules and sets `globalThis.dcpConfig`. A
 * later init() replaces them (a module that already holds an earlier one keeps it).
 */
export function installDcpModules(sources: DcpModuleSources): void {
  const modules = registry();
  const exportsOf: Record<ProvidedDcpModule, object> = {
    compute: sources.compute,
    wallet: sources.wallet,
    'dcp-config': sources.dcpConfig,
    'range-object': rangeObjectModule,
    'stats-ranges': statsRangesModule,
  };
  for (const name of providedDcpModules) {
    modules.set(name, exportsOf[name]);
    // An earlier require() left an entry (and Node may answer from it without asking the hook again).
    if (internals._cache[`dcp/${name}`]) cacheEntry(name, exportsOf[name]);
  }
  globalThis.dcpConfig = sources.dcpConfig;
  installRequireHook();
  registerImportHooks(modules);
}
