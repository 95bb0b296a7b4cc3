import { Injectable } from '@nestjs/common';
import { PrismaService } from '../database/prisma.service.js';
import type { ComputeGroupInfo } from '@commune/protocol';
import type { GroupRecord } from './domain/membership.js';

/** The compute_groups table. */
@Injectable()
export class ComputeGroupsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** false when the join key is taken. */
  async create(group: { joinKey: string; joinHash: string; owner: string; description: string }): Promise<boolean> {
    const rows = await this.prisma.pool.query(
      'INSERT INTO compute_groups (join_key, join_hash, owner, description) VALUES ($1, $2, $3, $4) ON CONFLICT (join_key) DO NOTHING RETURNING join_key',
      [group.joinKey, group.joinHash, group.owner, group.description],
    );
    return (rows.rowCount ?? 0) > 0;
  }

  async records(joinKeys: readonly string[]): Promise<Map<string, GroupRecord>> {
    if (joinKeys.length === 0) return new Map();
    const rows = await this.prisma.pool.query<{ join_key: string; join_hash: string }>('SELECT join_key, join_hash FROM compute_groups WHERE join_key = ANY($1::text[])', [joinKeys]);
    return new Map(rows.rows.map((row) => [row.join_key, { joinKey: row.join_key, joinHash: row.join_hash }]));
  }

  async info(joinKey: string): Promise<ComputeGroupInfo | null> {
    const rows = await this.prisma.pool.query<{ join_key: string; owner: string; description: string; created_at: Date }>(
      'SELECT join_key, owner, description, created_at FROM compute_groups WHERE join_key = $1',
      [joinKey],
    );
    const row = rows.rows[0];
    return row ? { joinKey: row.join_key, owner: row.owner, description: row.description, createdAt: row.created_at.toISOString() } : null;
  }
}
