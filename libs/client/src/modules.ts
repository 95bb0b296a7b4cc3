import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { basename, dirname, extname, isAbsolute, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CommuneError, ErrorCode, JobModulesSchema, Limits, moduleTableHashOf, moduleTableOf, type JobModule, type JobModules,
} from '@commune/protocol';
import type { SandboxModules } from '@commune/sandbox';

/**
 * job.requires(): the SDK's side of modules (spec "Modules"). Commune has no module server, so
 * everything a work function may require() is bundled on the client when the job runs and travels
 * with it:
 *
 * - A path specifier (`./refiner`, `../lib/x.js`, `/abs/m.js`) is a private module, resolved
 *   relative to the directory of the file that called job.requires() (as require() in that file
 *   would), or to `job.moduleRoot` when that is set.
 * - A bare specifier (`lodash`, `lodash/fp`) is a package, resolved from node_modules as Node
 *   would from that same directory, then from `requirePath` / `modulePath` directories.
 * - Every module's own dependencies (require() and import of relative files and packages) are
 *   found by esbuild and shipped as separate CommonJS files (ES modules and JSON converted), so
 *   the sandbox's require() keeps CommonJS semantics: one instance per module, cycles, exports.
 * - Node built-ins have no place in a sandbox: declaring one is EINVAL; a module that requires one
 *   gets MODULE_NOT_FOUND when (and only if) that require() runs.
 *
 * In the sandbox the work function's require() knows each declared specifier, and a private
 * module also by its file name (`require('./refiner')` for `job.requires('./fixtures/refiner')`).
 */

/** One job.requires() name and the directory it was declared from. */
export interface ModuleRequest {
  specifier: string;
  /** Where a relative specifier or package is looked up from (job.moduleRoot overrides it at run time). */
  directory: string;
}

export interface BundleOptions {
  /** Replaces each request's directory (job.moduleRoot). */
  moduleRoot?: string;
  /** Extra directories to search for packages (requirePath, then modulePath), relative to moduleRoot or the working directory. */
  searchPaths?: string[];
}

/** A path specifier: a private module (as opposed to a package). */
export function isPathSpecifier(specifier: string): boolean {
  return specifier === '.' || specifier === '..' || specifier.startsWith('./') || specifier.startsWith('../') || isAbsolute(specifier);
}

const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));

/** Whether a specifier names a Node built-in ('fs', 'node:fs', 'fs/promises'). */
export function isBuiltinModule(specifier: string): boolean {
  return builtins.has(specifier) || specifier.startsWith('node:');
}

/**
 * The directory of the code that called `calledFunction` (its caller's file), from the V8 stack;
 * the working directory when there is no file (REPL, eval).
 */
export function callerDirectory(calledFunction: (...args: never[]) => unknown): string {
  const original = Error.prepareStackTrace;
  let sites: NodeJS.CallSite[] = [];
  try {
    Error.prepareStackTrace = (_error, callSites) => callSites;
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder, calledFunction);
    sites = Array.isArray(holder.stack) ? holder.stack : [];
  } finally {
    Error.prepareStackTrace = original;
  }
  for (const site of sites) {
    let file = site.getFileName() ?? undefined;
    if (!file) continue;
    if (file.startsWith('file://')) {
      try {
        file = fileURLToPath(file);
      } catch {
        continue;
      }
    }
    if (isAbsolute(file)) return dirname(file);
  }
  return process.cwd();
}

/** The directory a job.moduleRoot names: a path or a file: URL (string or URL) of a directory. */
export function moduleRootPath(root: string | URL): string {
  const text: unknown = root instanceof URL ? root.href : root;
  if (typeof text !== 'string' || text.length === 0) throw new CommuneError(ErrorCode.EINVAL, 'job.moduleRoot is a directory: a path or a file: URL');
  return text.startsWith('file:') ? fileURLToPath(text) : resolve(text);
}

type Esbuild = typeof import('esbuild');
let esbuildLoading: Promise<Esbuild> | undefined;
/** esbuild is loaded only by jobs that require modules. */
function loadEsbuild(): Promise<Esbuild> {
  esbuildLoading ??= import('esbuild').then((module) => ((module as { default?: Esbuild }).default ?? module) as Esbuild);
  return esbuildLoading;
}

interface MetafileImport {
  path: string;
  kind: string;
  external?: boolean;
  original?: string;
}

const entryNamespace = 'commune-entry';

/**
 * Reads and bundles the requested modules and their dependencies into the job's module table.
 * ENOTFOUND when a module cannot be found, EINVAL when one cannot be bundled (a built-in, a syntax
 * error, too many files). Undefined when nothing was requested.
 */
export async function bundleModules(requests: readonly ModuleRequest[], options: BundleOptions = {}): Promise<JobModules | undefined> {
  if (requests.length === 0) return undefined;
  for (const { specifier } of requests) {
    if (isBuiltinModule(specifier)) {
      throw new CommuneError(ErrorCode.EINVAL, `job.requires('${specifier}'): Node built-in modules do not exist in sandboxes (no file system, network or process)`);
    }
  }
  const root = options.moduleRoot;
  const directoryOf = (request: ModuleRequest) => root ?? request.directory;
  const searchBase = root ?? process.cwd();
  const nodePaths = (options.searchPaths ?? []).map((path) => resolve(searchBase, path));
  const workingDirectory = process.cwd();
  const esbuild = await loadEsbuild();

  let metafile: { inputs: Record<string, { imports: MetafileImport[]; format?: string }> };
  try {
    const result = await esbuild.build({
      entryPoints: requests.map((_, i) => `${entryNamespace}:${i}`),
      bundle: true,
      write: false,
      metafile: true,
      outdir: resolve(workingDirectory, '.commune-modules'),
      platform: 'node',
      format: 'cjs',
      logLevel: 'silent',
      absWorkingDir: workingDirectory,
      nodePaths,
      plugins: [
        {
          name: 'commune-job-requires',
          setup(build) {
            build.onResolve({ filter: new RegExp(`^${entryNamespace}:\\d+$`) }, (args) => ({ path: args.path, namespace: entryNamespace }));
            build.onLoad({ filter: /.*/, namespace: entryNamespace }, (args) => {
              const request = requests[Number(args.path.slice(entryNamespace.length + 1))]!;
              return { contents: `require(${JSON.stringify(request.specifier)});\n`, resolveDir: directoryOf(request), loader: 'js' };
            });
          },
        },
      ],
    });
    metafile = result.metafile as typeof metafile;
  } catch (error) {
    throw bundlingError(error, requests, directoryOf);
  }

  // Files, by absolute path; entries, by request.
  const files = new Map<string, { imports: MetafileImport[]; format?: string }>();
  const entries = new Map<number, MetafileImport | undefined>();
  for (const [key, input] of Object.entries(metafile.inputs)) {
    const entry = new RegExp(`^${entryNamespace}:${entryNamespace}:(\\d+)$`).exec(key);
    if (entry) entries.set(Number(entry[1]), input.imports[0]);
    else if (!/^[a-z-]+:/i.test(key) || /^[a-z]:[\\/]/i.test(key)) files.set(resolve(workingDirectory, key), input);
  }
  if (files.size > Limits.maxModulesPerJob) {
    throw new CommuneError(ErrorCode.EINVAL, `the job's modules and their dependencies are ${files.size} files; the limit is ${Limits.maxModulesPerJob} (Limits.maxModulesPerJob)`);
  }
  const root_ = commonDirectory([...files.keys()]);
  const idOf = (path: string) => relative(root_, resolve(workingDirectory, path)).split(sep).join('/');

  const main: Record<string, string> = {};
  const alias = (name: string, id: string, specifier: string) => {
    const known = main[name];
    if (known !== undefined && known !== id) {
      throw new CommuneError(ErrorCode.EINVAL, `job.requires('${specifier}'): the sandbox would know two modules as '${name}' (${known} and ${id}); rename one of them`);
    }
    main[name] = id;
  };
  requests.forEach((request, i) => {
    const resolved = entries.get(i);
    if (resolved === undefined || resolved.external) {
      throw new CommuneError(ErrorCode.EINVAL, `job.requires('${request.specifier}'): it resolves to nothing that can be bundled`);
    }
    const id = idOf(resolved.path);
    alias(request.specifier, id, request.specifier);
    if (isPathSpecifier(request.specifier)) {
      // A private module is also known by its file name: require('./refiner') for job.requires('./lib/refiner').
      const file = basename(id);
      alias(`./${file}`, id, request.specifier);
      alias(`./${file.slice(0, file.length - extname(file).length)}`, id, request.specifier);
    }
  });

  const modules: JobModule[] = [];
  for (const [path, input] of files) {
    const id = idOf(path);
    const requires: Record<string, string> = {};
    for (const imported of input.imports) {
      if (imported.external || imported.original === undefined || !files.has(resolve(workingDirectory, imported.path))) continue;
      requires[imported.original] = idOf(imported.path);
    }
    modules.push({ id, source: await commonJsSource(esbuild, path, id, input.format), requires });
  }
  modules.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const parsed = JobModulesSchema.safeParse({ main, files: modules });
  if (!parsed.success) throw new CommuneError(ErrorCode.EINVAL, `the job's modules are not valid: ${parsed.error.message}`);
  return parsed.data;
}

/** A file as a CommonJS module body: CommonJS as it is, ES modules and TypeScript converted, JSON as module.exports. */
async function commonJsSource(esbuild: Esbuild, path: string, id: string, format: string | undefined): Promise<string> {
  const text = await readFile(path, 'utf8');
  const extension = extname(path).toLowerCase();
  if (extension === '.json') return `module.exports = ${JSON.stringify(JSON.parse(text))};`;
  const loaders: Partial<Record<string, 'ts' | 'tsx' | 'jsx'>> = { '.ts': 'ts', '.mts': 'ts', '.cts': 'ts', '.tsx': 'tsx', '.jsx': 'jsx' };
  const loader = loaders[extension];
  if (format === 'esm' || loader !== undefined) {
    const result = await esbuild.transform(text, { loader: loader ?? 'js', format: 'cjs', platform: 'node', sourcefile: id, target: 'es2022', logLevel: 'silent' });
    return result.code;
  }
  // A shebang line is not JavaScript inside the CommonJS wrapper.
  return text.startsWith('#!') ? `//${text.slice(2)}` : text;
}

function commonDirectory(paths: string[]): string {
  if (paths.length === 0) return process.cwd();
  let common = dirname(paths[0]!);
  for (const path of paths) {
    while (common !== dirname(common) && relative(common, path).startsWith('..')) common = dirname(common);
  }
  return common;
}

interface EsbuildMessage {
  text: string;
  location?: { file: string; line: number; lineText?: string } | null;
}

/** esbuild's failure as a CommuneError: ENOTFOUND when only resolution failed, else EINVAL. */
function bundlingError(error: unknown, requests: readonly ModuleRequest[], directoryOf: (request: ModuleRequest) => string): CommuneError {
  const messages = ((error as { errors?: EsbuildMessage[] }).errors ?? []) as EsbuildMessage[];
  if (messages.length === 0) return new CommuneError(ErrorCode.EINVAL, `bundling the job's modules failed: ${error instanceof Error ? error.message : String(error)}`);
  const unresolved = messages.every((message) => message.text.startsWith('Could not resolve'));
  const described = messages.slice(0, 5).map((message) => {
    const file = message.location?.file ?? '';
    const entry = new RegExp(`^(?:${entryNamespace}:)?${entryNamespace}:(\\d+)$`).exec(file);
    if (entry) {
      const request = requests[Number(entry[1])]!;
      const what = isPathSpecifier(request.specifier) ? 'module' : 'package';
      return unresolved
        ? `job.requires('${request.specifier}'): cannot find the ${what} '${request.specifier}' from ${directoryOf(request)}`
        : `job.requires('${request.specifier}'): ${message.text}`;
    }
    return `${file}:${message.location?.line ?? 0}: ${message.text}`;
  });
  const more = messages.length > 5 ? ` (and ${messages.length - 5} more)` : '';
  return new CommuneError(unresolved ? ErrorCode.ENOTFOUND : ErrorCode.EINVAL, described.join('; ') + more, { errors: messages.map((message) => message.text) });
}

/** The modules as a sandbox takes them (localExec, estimate): the table with its hash, and the sources. */
export function sandboxModulesOf(modules: JobModules | undefined): SandboxModules | undefined {
  if (modules === undefined) return undefined;
  const table = moduleTableOf(modules);
  return {
    hash: moduleTableHashOf(table),
    main: table.main,
    files: table.files.map((file, i) => ({ ...file, source: modules.files[i]!.source })),
  };
}
