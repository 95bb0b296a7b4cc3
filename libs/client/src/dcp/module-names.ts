/**
 * The `dcp/*` module names DCP programs load after `init()` (dcp-client 5.6.1's ns-map.js), and
 * what Commune does with each: the ones it backs with its own modules, and the ones it refuses
 * with an error that says what Commune offers instead. A refused name never resolves to an
 * empty object: a program finds out at its `require()`, not at some later `undefined`.
 */

/** The names Commune backs (see dcp-modules.ts for what each one is). */
export const providedDcpModules = ['compute', 'wallet', 'dcp-config', 'range-object', 'stats-ranges'] as const;
export type ProvidedDcpModule = (typeof providedDcpModules)[number];

/** Every other name of dcp-client's ns-map, with what Commune offers instead. */
export const refusedDcpModules: Readonly<Record<string, string>> = Object.freeze({
  build: "dcp/build describes dcp-client's own build; Commune has no equivalent.",
  identity:
    "Commune has no identity service (DCP's logins, sessions and proxy keys): requests are signed by the payment account, require('dcp/wallet').get(); an identity keystore is require('dcp/wallet').getId().",
  jnu: "dcp/jnu is DCP's database client for its own services; read jobs with compute.status(), compute.getJobInfo(), compute.getSliceInfo() and result handles.",
  types: "dcp/types holds dcp-client's internal classes; use the bignumber.js and ethers packages.",
  protocol: "dcp/protocol is DCP's wire protocol; Commune speaks its own (socket.io, @commune/protocol), through compute and wallet.",
  'dom-tk': "dcp/dom-tk is dcp-client's browser dialog toolkit; Commune's SDK has none.",
  'dcp-assert': 'dcp/dcp-assert is internal to dcp-client; use node:assert.',
  'dcp-xhr': 'dcp/dcp-xhr is internal to dcp-client; use fetch().',
  'dcp-env': 'dcp/dcp-env is internal to dcp-client; Commune runs on Node (process.versions).',
  'dcp-url': "dcp/dcp-url is internal to dcp-client; dcpConfig's locations are plain URL objects.",
  cli: "dcp/cli is dcp-client's command-line option parser; use node:util's parseArgs.",
  constants: 'dcp/constants is internal to dcp-client.',
  'dcp-timers': "dcp/dcp-timers is internal to dcp-client; use Node's timers.",
  'resource-dir': "dcp/resource-dir is dcp-client's ~/.dcp; Commune keeps keystores in require('dcp/wallet').home (COMMUNE_HOME, else ~/.commune).",
  'dcp-events': "dcp/dcp-events is dcp-client's EventEmitter; use node:events (job handles are node:events EventEmitters with DCP's addEventListener/removeEventListener).",
  eth: 'dcp/eth is internal to dcp-client; use the ethers package.',
  serialize: 'dcp/serialize is internal to dcp-client; the kvin package serialises values as DCP does.',
  job: "dcp/job is internal to dcp-client; the job handle class is require('dcp/compute').Job, and result handles come from job.exec().",
  worker:
    "Commune's worker is the commune-worker program (apps/worker: commune-worker --scheduler URL --earnings ADDRESS), not a class embedded in a client program.",
  utils: 'dcp/utils is internal to dcp-client.',
  publish: "dcp/publish is dcp-client's package publisher; Commune has no module server: job.requires() bundles modules with the job.",
  'compute-groups':
    "use compute.createComputeGroup({ name }), compute.getComputeGroup(joinKey) and job.computeGroups = [{ joinKey, joinSecret }].",
  'signal-handler': 'dcp/signal-handler is internal to dcp-client; use process.on(signal).',
  'standard-objects': "dcp/standard-objects is internal to dcp-client; use the program's own globals.",
});

const provided: ReadonlySet<string> = new Set(providedDcpModules);

/** `dcp/compute` -> `compute`; undefined for any name that is not one of dcp-client's. */
export function dcpModuleNameOf(request: unknown): string | undefined {
  if (typeof request !== 'string' || !request.startsWith('dcp/')) return undefined;
  const name = request.slice('dcp/'.length);
  return provided.has(name) || Object.hasOwn(refusedDcpModules, name) ? name : undefined;
}

export function isProvidedDcpModule(name: string): name is ProvidedDcpModule {
  return provided.has(name);
}

/** The error a refused name's `require()` / `import()` fails with: MODULE_NOT_FOUND, as for any module that is not there. */
export function refusalMessage(name: string): string {
  return `Cannot find module 'dcp/${name}': Commune does not provide it. ${refusedDcpModules[name] ?? ''}`.trimEnd();
}
