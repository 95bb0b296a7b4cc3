import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  CommuneError, ErrorCode, Limits, type ApplianceFunctionSource, type ApplianceJobRef, type ApplianceVersionInfo, type JobAppliance,
  type PublishApplianceReply, type PublishApplianceRequest,
} from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { AppliancesRepository, type StoredApplianceVersion } from './appliances.repository.js';
import {
  checkJobWork, checkNamespace, checkNewVersion, checkPublication, highestSatisfying, parseVersionSelector,
} from './domain/appliance-rules.js';

/** spec "Appliance Handles": publishing versions, resolving a name and range to one, and giving out function sources. */
@Injectable()
export class AppliancesService {
  private readonly logger = new Logger(AppliancesService.name);

  constructor(@Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv, private readonly appliances: AppliancesRepository) {}

  /** spec publish(): ENAMESPACE, EEXIST, EWORKTOOBIG as the spec says; EINVAL, EBADSIGNATURE, EEXPIRED for bad requests. */
  async publish(request: PublishApplianceRequest): Promise<PublishApplianceReply> {
    const { appliance: spec, signature } = request;
    const checked = await checkPublication(spec, signature, Date.now(), { maxWorkBytes: this.env.MAX_WORK_BYTES, maxSignatureLifetimeMs: Limits.maxSignatureLifetimeMs });
    const { stored, resent } = await this.appliances.publish(spec, signature, checked, (reservedBy, existing) => {
      checkNamespace(spec.name, reservedBy, spec.publisher);
      return checkNewVersion(spec.name, spec.version, existing, signature) === 'resent' ? 'resent' : 'store';
    });
    if (!resent) this.logger.log(`appliance ${stored.name}@${stored.version} published by ${stored.publisher} as #${stored.versionId}`);
    return {
      applianceId: stored.applianceId,
      versionId: stored.versionId,
      name: stored.name,
      version: stored.version,
      receipt: checked.receipt,
      cost: '0',
      publishedAt: stored.publishedAt.toISOString(),
    };
  }

  /** The highest version of `name` within `selector` (an npm range or "#versionId"); ENOTFOUND when none is published. */
  async resolve(name: string, selector: string): Promise<ApplianceVersionInfo> {
    const wanted = parseVersionSelector(selector);
    let versionId: string;
    if (wanted.kind === 'versionId') {
      versionId = wanted.versionId;
    } else {
      const versions = await this.appliances.versions(name);
      if (versions === null) throw new CommuneError(ErrorCode.ENOTFOUND, `no appliance "${name}" is published`);
      const best = highestSatisfying(versions, wanted.range);
      if (best === null) {
        throw new CommuneError(ErrorCode.ENOTFOUND, `no version of "${name}" satisfies "${wanted.range}" (published: ${versions.map((v) => v.version).join(', ')})`);
      }
      versionId = best.versionId;
    }
    const stored = await this.appliances.version(versionId);
    if (stored === null || stored.name !== name) throw new CommuneError(ErrorCode.ENOTFOUND, `"${name}" has no version #${versionId}`);
    return toInfo(stored);
  }

  async version(versionId: string): Promise<ApplianceVersionInfo> {
    const stored = await this.appliances.version(versionId);
    if (stored === null) throw new CommuneError(ErrorCode.ENOTFOUND, `no appliance version #${versionId}`);
    return toInfo(stored);
  }

  async functionSource(versionId: string, name: string): Promise<ApplianceFunctionSource> {
    const source = await this.appliances.functionSource(versionId, name);
    if (source === null) throw new CommuneError(ErrorCode.ENOTFOUND, `appliance version #${versionId} has no function "${name}"`);
    return { versionId, function: name, ...source };
  }

  /**
   * For deploy: the job's work must be the referenced function's published source (so the
   * owner's signature over the work and the reference agree); resolves with what the job's status
   * shows about its origin.
   */
  async jobOrigin(ref: ApplianceJobRef, work: string): Promise<JobAppliance> {
    checkJobWork(work, await this.appliances.functionHash(ref.versionId, ref.function), ref);
    const stored = await this.appliances.version(ref.versionId);
    if (stored === null) throw new CommuneError(ErrorCode.ENOTFOUND, `no appliance version #${ref.versionId}`);
    return { applianceId: stored.applianceId, name: stored.name, version: stored.version, versionId: ref.versionId, function: ref.function };
  }
}

function toInfo(stored: StoredApplianceVersion): ApplianceVersionInfo {
  return {
    applianceId: stored.applianceId,
    versionId: stored.versionId,
    name: stored.name,
    version: stored.version,
    publisher: stored.publisher,
    metadata: stored.metadata,
    requirePath: stored.requirePath,
    functions: stored.functions,
    publishedAt: stored.publishedAt.toISOString(),
  };
}
