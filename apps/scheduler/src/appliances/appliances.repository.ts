import { randomBytes } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { CommuneError, ErrorCode, Limits, type ApplianceFunctionInfo, type ApplianceMetadata, type ApplianceSpec } from '@commune/protocol';
import { PrismaService } from '../database/prisma.service.js';
import { Prisma } from '../generated/prisma/client.js';
import type { CheckedPublication } from './domain/appliance-rules.js';

/** A published version as the service sees it. */
export interface StoredApplianceVersion {
  applianceId: string;
  versionId: string;
  name: string;
  version: string;
  publisher: string;
  metadata: ApplianceMetadata;
  requirePath: string[];
  signature: string;
  publishedAt: Date;
  functions: ApplianceFunctionInfo[];
}

const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz';
function newApplianceId(): string {
  const bytes = randomBytes(20);
  let text = '';
  for (const byte of bytes) text += alphabet[byte % 36];
  return `a_${text}`;
}

const versionInclude = { appliance: true, functions: { orderBy: { name: 'asc' } } } as const;
type VersionRow = Prisma.ApplianceVersionGetPayload<{ include: typeof versionInclude }>;

function toStored(row: VersionRow): StoredApplianceVersion {
  return {
    applianceId: row.applianceId,
    versionId: row.versionId,
    name: row.appliance.name,
    version: row.version,
    publisher: row.appliance.publisher,
    metadata: row.metadata as ApplianceMetadata,
    requirePath: row.requirePath as string[],
    signature: row.signature,
    publishedAt: row.publishedAt,
    functions: row.functions.map((fn) => ({
      name: fn.name,
      workHash: fn.workHash,
      workBytes: Buffer.byteLength(fn.work),
      estimation: fn.estimation,
      sliceProfile: (fn.sliceProfile ?? null) as ApplianceFunctionInfo['sliceProfile'],
      requirePath: fn.requirePath as string[],
      modulePath: fn.modulePath as string[],
    })),
  };
}

/** Appliances, their versions and functions in Postgres. */
@Injectable()
export class AppliancesRepository {
  constructor(private readonly prisma: PrismaService) {}

  /**
   * Stores a version in one transaction: reserves the name for the publisher when it is new
   * (the unique name makes concurrent first publications agree on one owner), then inserts the
   * version (unique per appliance and version number). `decide` sees who holds the name and the
   * version already published under this number, and throws when publishing is refused
   * (ENAMESPACE, EEXIST), which rolls the transaction back.
   */
  async publish(
    spec: ApplianceSpec,
    signature: string,
    checked: CheckedPublication,
    decide: (reservedBy: string, existing: StoredApplianceVersion | null) => 'store' | 'resent',
  ): Promise<{ stored: StoredApplianceVersion; resent: boolean }> {
    const attempt = () =>
      this.prisma.$transaction(async (tx) => {
        await tx.appliance.createMany({ data: [{ id: newApplianceId(), name: spec.name, publisher: spec.publisher }], skipDuplicates: true });
        const appliance = await tx.appliance.findUniqueOrThrow({ where: { name: spec.name } });
        const existingRow = await tx.applianceVersion.findUnique({ where: { applianceId_version: { applianceId: appliance.id, version: spec.version } }, include: versionInclude });
        const existing = existingRow ? toStored(existingRow) : null;
        if (decide(appliance.publisher, existing) === 'resent') return { stored: existing!, resent: true };
        const versions = await tx.applianceVersion.count({ where: { applianceId: appliance.id } });
        if (versions >= Limits.maxVersionsPerAppliance) throw new CommuneError(ErrorCode.ETOOBIG, `"${spec.name}" has ${versions} versions; the limit is ${Limits.maxVersionsPerAppliance}`);
        const row = await tx.applianceVersion.create({
          data: {
            versionId: checked.versionId,
            applianceId: appliance.id,
            version: spec.version,
            metadata: spec.metadata as Prisma.InputJsonValue,
            requirePath: (spec.requirePath ?? []) as Prisma.InputJsonValue,
            spec: spec as unknown as Prisma.InputJsonValue,
            signature,
            functions: {
              create: checked.functions.map((fn) => ({
                name: fn.name,
                work: fn.work,
                workHash: fn.workHash,
                estimation: fn.estimation ?? null,
                ...(fn.sliceProfile ? { sliceProfile: fn.sliceProfile as Prisma.InputJsonValue } : {}),
                requirePath: (fn.requirePath ?? []) as Prisma.InputJsonValue,
                modulePath: (fn.modulePath ?? []) as Prisma.InputJsonValue,
              })),
            },
          },
          include: versionInclude,
        });
        return { stored: toStored(row), resent: false };
      });
    try {
      return await attempt();
    } catch (error) {
      // Two publications of the same version racing: the loser sees the winner's row on a second look.
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') return attempt();
      throw error;
    }
  }

  /** Every published version number of an appliance (for range resolution), or null when the name is unknown. */
  async versions(name: string): Promise<Array<{ version: string; versionId: string }> | null> {
    const appliance = await this.prisma.appliance.findUnique({
      where: { name },
      select: { versions: { select: { version: true, versionId: true }, take: Limits.maxVersionsPerAppliance } },
    });
    return appliance ? appliance.versions : null;
  }

  async version(versionId: string): Promise<StoredApplianceVersion | null> {
    const row = await this.prisma.applianceVersion.findUnique({ where: { versionId }, include: versionInclude });
    return row ? toStored(row) : null;
  }

  async functionSource(versionId: string, name: string): Promise<{ work: string; workHash: string; estimation: string | null } | null> {
    return this.prisma.applianceFunction.findUnique({
      where: { versionId_name: { versionId, name } },
      select: { work: true, workHash: true, estimation: true },
    });
  }

  async functionHash(versionId: string, name: string): Promise<{ workHash: string } | null> {
    return this.prisma.applianceFunction.findUnique({ where: { versionId_name: { versionId, name } }, select: { workHash: true } });
  }
}
