import { Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import {
  CommuneError, decodeState, encodeState, ErrorCode, Limits, stateBytes, type StateObject, type StateOperation,
} from '@commune/protocol';
import { PrismaService } from '../database/prisma.service.js';
import { RedisConnections, type ScriptRunner } from '../redis/redis.module.js';
import { holdsTaskScript, readStateScript, seedStateScript, stateOperationScript } from './state-scripts.js';


/** A job's state as stored: its version and the object. */
export interface StoredState {
  version: number;
  state: StateObject;
}

/** What one operation did (see stateOperationScript). */
export interface StateChange extends StoredState {
  replaced: boolean;
  /** testAndSet that replaced: the state before. */
  previous?: StateObject;
}

/**
 * The only code that touches shared state in Redis and Postgres. Redis applies each operation
 * atomically (one Lua script); Postgres keeps every change (job_states, newest version wins) so
 * that Redis can be rebuilt from it.
 */
@Injectable()
export class StateRepository {
  /** Redis keeps a job's state this long after its last use; Postgres has it after that. */
  static readonly redisTtlMs = 60 * 60_000;
  /** A lost Redis key is seeded from Postgres and the operation retried at most this often. */
  static readonly maxSeedAttempts = 3;
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly scripts: Record<'operate' | 'seed' | 'read' | 'holds', ScriptRunner>;

  constructor(connections: RedisConnections, private readonly prisma: PrismaService) {
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.scripts = connections.scripts('commune_state', { operate: stateOperationScript, seed: seedStateScript, read: readStateScript, holds: holdsTaskScript });
  }

  /**
   * Applies an operation atomically. `leaseOwner`: a worker connection, which must hold a task of
   * the job (ENOTLEASED otherwise); null for the job's owner.
   */
  async operate(jobId: string, operation: StateOperation, leaseOwner: string | null, maxBytes: number = Limits.maxStateBytes): Promise<StateChange> {
    const args: (string | number)[] = [this.prefix, jobId, maxBytes, StateRepository.redisTtlMs, leaseOwner ?? '', operation.kind];
    if (operation.kind === 'set') {
      const incoming = decodeState(operation.state) as StateObject;
      const property = operation.property ?? '';
      const newText = operation.property !== undefined && Object.prototype.hasOwnProperty.call(incoming, property) ? encodeState(incoming[property]) : '';
      const pairs = pairsOf(incoming);
      args.push(operation.test ? '1' : '0', operation.condition ?? '', property, newText, stateBytes(operation.state), pairs.length / 2, ...pairs);
    } else {
      args.push(operation.property, stateBytes(JSON.stringify(operation.property)), operation.by, String(operation.by));
    }
    for (let attempt = 0; ; attempt++) {
      const reply = (await this.scripts.operate(...args)) as Array<string | number>;
      if (reply[0] === 'missing' && attempt < StateRepository.maxSeedAttempts) {
        await this.seedFromPostgres(jobId);
        continue;
      }
      if (reply[0] === 'missing') throw new CommuneError(ErrorCode.ESCHEDULER, `the state of job ${jobId} could not be loaded`);
      if (reply[0] === 'err') throw new CommuneError(String(reply[1]) as ErrorCode, String(reply[2]));
      const replaced = Number(reply[1]) === 1;
      const version = Number(reply[2]);
      const previousCount = Number(reply[3]);
      let at = 4;
      let previous: StateObject | undefined;
      if (previousCount >= 0) {
        previous = objectOf(reply.slice(at, at + previousCount * 2));
        at += previousCount * 2;
      }
      return { replaced, version, state: objectOf(reply.slice(at)), ...(previous ? { previous } : {}) };
    }
  }

  /** The job's state now (seeded from Postgres when Redis lost it). ENOTFOUND for an unknown job. */
  async read(jobId: string): Promise<StoredState> {
    for (let attempt = 0; attempt < StateRepository.maxSeedAttempts; attempt++) {
      const reply = (await this.scripts.read(this.prefix, jobId, StateRepository.redisTtlMs)) as Array<string | number>;
      if (reply[0] === 'ok') return { version: Number(reply[1]), state: objectOf(reply.slice(2)) };
      await this.seedFromPostgres(jobId);
    }
    throw new CommuneError(ErrorCode.ESCHEDULER, `the state of job ${jobId} could not be loaded`);
  }

  /** Records the state a job was deployed with (version 0). */
  async initialize(jobId: string, text: string): Promise<void> {
    await this.prisma.pool.query('INSERT INTO job_states (job_id, version, state) VALUES ($1, 0, $2) ON CONFLICT (job_id) DO NOTHING', [jobId, text]);
    await this.seed(jobId, 0, decodeState(text) as StateObject);
  }

  /** A new job without state: {} at version 0 in Redis only (Postgres has no row until the first change). */
  async seedEmpty(jobId: string): Promise<void> {
    await this.seed(jobId, 0, {});
  }

  /** Writes a change to Postgres unless a newer version is there already. */
  async persist(jobId: string, version: number, state: StateObject): Promise<void> {
    await this.prisma.pool.query(
      `INSERT INTO job_states (job_id, version, state, updated_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (job_id) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state, updated_at = now()
       WHERE job_states.version < EXCLUDED.version`,
      [jobId, version, encodeState(state)],
    );
  }

  /** The job's owner, or null when there is no such job. */
  async owner(jobId: string): Promise<string | null> {
    const rows = await this.prisma.pool.query<{ owner: string }>('SELECT owner FROM jobs WHERE id = $1', [jobId]);
    return rows.rows[0]?.owner ?? null;
  }

  /** Whether a worker connection holds a task of the job now. */
  async holdsTask(leaseOwner: string, jobId: string): Promise<boolean> {
    return Number(await this.scripts.holds(this.prefix, leaseOwner, jobId)) === 1;
  }

  /** Redis lost the job's state (or never had it): put Postgres's there, an absent row being {} at version 0. */
  private async seedFromPostgres(jobId: string): Promise<void> {
    const rows = await this.prisma.pool.query<{ version: string; state: string }>('SELECT version::text, state FROM job_states WHERE job_id = $1', [jobId]);
    const row = rows.rows[0];
    if (row) {
      await this.seed(jobId, Number(row.version), decodeState(row.state) as StateObject);
      return;
    }
    if ((await this.owner(jobId)) === null) throw new CommuneError(ErrorCode.ENOTFOUND, `no job ${jobId}`);
    await this.seed(jobId, 0, {});
  }

  private async seed(jobId: string, version: number, state: StateObject): Promise<void> {
    const pairs = pairsOf(state);
    await this.scripts.seed(this.prefix, jobId, version, stateBytes(encodeState(state)), StateRepository.redisTtlMs, pairs.length / 2, ...pairs);
  }
}

/** name, value text, name, value text, ... */
function pairsOf(state: StateObject): string[] {
  const pairs: string[] = [];
  for (const name of Object.keys(state)) pairs.push(name, encodeState(state[name]));
  return pairs;
}

function objectOf(pairs: Array<string | number>): StateObject {
  const state: StateObject = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    Object.defineProperty(state, String(pairs[i]), { value: decodeState(String(pairs[i + 1])), enumerable: true, writable: true, configurable: true });
  }
  return state;
}
