import semver from 'semver';
import {
  ApplianceVersionIdSchema, CommuneError, ErrorCode, hashOf, SignedKind, verifySignedRequest, type ApplianceSpec,
} from '@commune/protocol';

/**
 * The rules of publishing and finding appliances (spec "Appliance Handles"), without I/O: version
 * numbers and ranges as npm reads them, the publisher's signature, the size limit, who may use a
 * name, and which version a range picks.
 */

/** A version as publish() takes it: a valid semantic version, written exactly as semver prints it ("1.0.0", "2.1.0-beta.1"). */
export function checkVersion(version: string): string {
  const parsed = semver.parse(version);
  if (parsed === null) {
    throw new CommuneError(ErrorCode.EINVAL, `"${version}" is not a semantic version (major.minor.patch, e.g. "1.0.0", as npm uses)`);
  }
  if (parsed.version !== version) {
    throw new CommuneError(ErrorCode.EINVAL, `write the version "${version}" as "${parsed.version}" (no "v" or "=" prefix, spaces or build metadata)`);
  }
  return version;
}

/** What `new compute.Appliance(name, version)` asks for: an npm range, or exactly one version by its id ("#" + versionId). */
export type VersionSelector = { kind: 'versionId'; versionId: string } | { kind: 'range'; range: string };

export function parseVersionSelector(selector: string): VersionSelector {
  const text = selector.trim();
  if (text.startsWith('#')) {
    const id = ApplianceVersionIdSchema.safeParse(text.slice(1).toLowerCase());
    if (!id.success) throw new CommuneError(ErrorCode.EINVAL, `"${selector}" is not "#" followed by a version id (64 hex digits, as publish() returned it)`);
    return { kind: 'versionId', versionId: id.data };
  }
  const range = text === '' ? '*' : text;
  if (semver.validRange(range) === null) {
    throw new CommuneError(ErrorCode.EINVAL, `"${selector}" is not a version range npm understands (e.g. "1.0.0", "^1.0.0", "~1.2", ">=1 <2", "*") nor "#versionId"`);
  }
  return { kind: 'range', range };
}

/** The highest published version that satisfies `range` (npm's rule: prereleases only when the range names one), or null. */
export function highestSatisfying<T extends { version: string }>(published: readonly T[], range: string): T | null {
  const best = semver.maxSatisfying(published.map((entry) => entry.version), range);
  return best === null ? null : published.find((entry) => entry.version === best) ?? null;
}

/**
 * spec: the name is reserved by whoever published its first version; "only new versions of that
 * appliance signed by the same key will be accepted" (ENAMESPACE otherwise).
 */
export function checkNamespace(name: string, reservedBy: string | null, publisher: string): void {
  if (reservedBy !== null && reservedBy !== publisher) {
    throw new CommuneError(ErrorCode.ENAMESPACE, `the appliance name "${name}" is reserved by ${reservedBy}; only that key may publish its versions`);
  }
}

/**
 * spec: "It is an error to use the same version number twice for the same appliance under any
 * circumstance" (EEXIST). The very same signed publication sent again (its reply was lost) is
 * not a second use: it gets the first answer.
 */
export function checkNewVersion(name: string, version: string, existing: { signature: string } | null, signature: string): 'new' | 'resent' {
  if (existing === null) return 'new';
  if (existing.signature === signature) return 'resent';
  throw new CommuneError(ErrorCode.EEXIST, `version ${version} of "${name}" is already published; publish a new version number`);
}

export interface PublicationLimits {
  /** The combined size of an appliance's function and estimation sources, bytes (the scheduler's MAX_WORK_BYTES). */
  maxWorkBytes: number;
  maxSignatureLifetimeMs: number;
}

/** A publication that passed every check, with the ids the scheduler assigns from its content. */
export interface CheckedPublication {
  /** keccak256 of the signed ApplianceSpec, without 0x: publish()'s versionId. */
  versionId: string;
  /** keccak256 of {versionId, signature}: publish()'s receipt. */
  receipt: string;
  functions: Array<ApplianceSpec['functions'][number] & { workHash: string; workBytes: number }>;
}

/**
 * Checks a signed publication (protocol verifySignedRequest, kind appliance): not expired nor
 * expiring too far ahead (EEXPIRED), signed by its publisher (EBADSIGNATURE), a semantic version
 * (EINVAL), distinct function names (EINVAL) and, all function and estimation sources together,
 * at most maxWorkBytes (EWORKTOOBIG). No nonce: a version is published once (checkNewVersion).
 */
export async function checkPublication(spec: ApplianceSpec, signature: string, now: number, limits: PublicationLimits): Promise<CheckedPublication> {
  await verifySignedRequest(
    { kind: SignedKind.appliance, payload: spec, signature, signer: spec.publisher, expiresAt: spec.expiresAt },
    { now, maxLifetimeMs: limits.maxSignatureLifetimeMs },
  );
  checkVersion(spec.version);
  const seen = new Set<string>();
  for (const fn of spec.functions) {
    if (seen.has(fn.name)) throw new CommuneError(ErrorCode.EINVAL, `the function "${fn.name}" is defined twice`);
    seen.add(fn.name);
  }
  const functions = spec.functions.map((fn) => ({ ...fn, workHash: hashOf(fn.work), workBytes: Buffer.byteLength(fn.work) }));
  const totalBytes = spec.functions.reduce((sum, fn) => sum + Buffer.byteLength(fn.work) + Buffer.byteLength(fn.estimation ?? ''), 0);
  if (totalBytes > limits.maxWorkBytes) {
    throw new CommuneError(ErrorCode.EWORKTOOBIG, `the appliance's functions are ${totalBytes} bytes together; the limit is ${limits.maxWorkBytes}`);
  }
  const versionId = hashOf(spec).slice(2);
  return { versionId, receipt: hashOf({ versionId, signature }), functions };
}

/** A job that says it runs an appliance function must run exactly that function's published source. */
export function checkJobWork(work: string, published: { workHash: string } | null, ref: { versionId: string; function: string }): void {
  if (published === null) {
    throw new CommuneError(ErrorCode.ENOTFOUND, `appliance version #${ref.versionId} has no function "${ref.function}"`);
  }
  if (hashOf(work) !== published.workHash) {
    throw new CommuneError(ErrorCode.EINVAL, `the job's work is not the published source of "${ref.function}" in appliance version #${ref.versionId}`);
  }
}
