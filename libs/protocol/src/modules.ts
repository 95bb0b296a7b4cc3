import { canonicalJson, hashOf } from './canonical.js';
import type { JobModules, ModuleTable } from './schemas.js';

/**
 * Helpers for a job's modules (spec job.requires()) that the SDK, the scheduler and the worker
 * must agree on: what counts towards maxWorkBytes and how a module table is hashed.
 */

const encoder = new TextEncoder();

export function utf8Bytes(text: string): number {
  return encoder.encode(text).length;
}

/** Bytes the modules add to a job: every source, id and require map. */
export function modulesBytes(modules: JobModules | undefined): number {
  if (modules === undefined) return 0;
  let bytes = utf8Bytes(canonicalJson(modules.main));
  for (const file of modules.files) bytes += utf8Bytes(file.source) + utf8Bytes(file.id) + utf8Bytes(canonicalJson(file.requires));
  return bytes;
}

/** The size a deploy is checked against Limits.maxWorkBytes (EWORKTOOBIG): work source + arguments (JSON) + modules. */
export function workBytesOf(work: string, args: unknown, modules: JobModules | undefined): number {
  return utf8Bytes(work) + utf8Bytes(canonicalJson(args)) + modulesBytes(modules);
}

/** The table workers get: each source replaced by its hash (hashOf(source)). */
export function moduleTableOf(modules: JobModules): ModuleTable {
  return {
    main: modules.main,
    files: modules.files.map((file) => ({ id: file.id, hash: hashOf(file.source), requires: file.requires })),
  };
}

/** The hash a module table is cached under (by workers, per connection by the scheduler). */
export function moduleTableHashOf(table: ModuleTable): string {
  return hashOf(table);
}
