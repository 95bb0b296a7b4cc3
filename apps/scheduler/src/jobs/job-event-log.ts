import { Inject, Injectable } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { JobEventLimits, type JobEventCursor } from '@commune/protocol';
import { SCHEDULER_ENV, type SchedulerEnv } from '../config/env.js';
import { RedisConnections, type ScriptRunner } from '../redis/redis.module.js';

/**
 * Each job's event log in Redis, so that a client that missed events (a reconnect, to any replica)
 * gets them again in order. Keys, under the prefix P:
 *   P:job-events:<jobId>        STREAM  one entry per event, id `<seq>-0`, field `e` = the logged text
 *   P:job-events:<jobId>:meta   HASH    seq (last sequence number), born (the log's incarnation),
 *                                       bytes (of the entries kept), ended (the job ended)
 * One script call numbers a batch of events and appends it: sequence numbers are contiguous per
 * job whichever replica emits. The epoch of a cursor hashes the Redis generation (P:generation,
 * see RedisGeneration) with the log's incarnation, so a Redis that lost its data, or a log that
 * expired and was begun again, is a new epoch and never passes for the old one.
 *
 * The log keeps at most JOB_EVENT_LOG_LENGTH entries and JOB_EVENT_LOG_BYTES of them (oldest
 * dropped first, exactly); it expires JOB_EVENT_LOG_GRACE_SECONDS after the job's end, or
 * idleTtlSeconds after its last event while the job runs. Results events keep only their slice
 * indexes (the values are in PostgreSQL; see JobEvents).
 */

/** ARGV: prefix, jobId, maxEntries, maxBytes, idleTtlSeconds, graceTtlSeconds, ending (1/0), fresh id, payloads... -> { epoch, first seq } */
export const appendEventsScript = `
local prefix, jobId = ARGV[1], ARGV[2]
local maxEntries, maxBytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local idleTtl, graceTtl = tonumber(ARGV[5]), tonumber(ARGV[6])
local ending, fresh = ARGV[7] == '1', ARGV[8]
local generationKey = prefix .. ':generation'
local log = prefix .. ':job-events:' .. jobId
local meta = log .. ':meta'
-- A Redis without a generation just lost its data: this write begins the new one (first writer
-- wins, as RedisGeneration does), which every process then notices as the loss it is.
local generation = redis.call('GET', generationKey)
if not generation then
  redis.call('SET', generationKey, fresh, 'NX')
  generation = redis.call('GET', generationKey)
end
local born = redis.call('HGET', meta, 'born')
if not born then
  born = fresh
  redis.call('HSET', meta, 'born', born)
end
local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
local first = nil
for i = 9, #ARGV do
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  if not first then first = seq end
  redis.call('XADD', log, seq .. '-0', 'e', ARGV[i])
  bytes = bytes + #ARGV[i]
end
-- Oldest entries go first until the log is within both bounds (an entry larger than maxBytes on
-- its own is not kept at all: a replay over it reports a gap).
local length = redis.call('XLEN', log)
local start, dropped = '-', nil
while length > 0 and (length > maxEntries or bytes > maxBytes) do
  local entries = redis.call('XRANGE', log, start, '+', 'COUNT', 64)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    if length <= maxEntries and bytes <= maxBytes then break end
    length = length - 1
    bytes = bytes - #entry[2][2]
    dropped = entry[1]
  end
  start = '(' .. dropped
end
if dropped then
  local seq = tonumber(string.match(dropped, '^(%d+)'))
  redis.call('XTRIM', log, 'MINID', (seq + 1) .. '-0')
end
redis.call('HSET', meta, 'bytes', bytes)
if ending then redis.call('HSET', meta, 'ended', '1') end
local ttl = idleTtl
if ending or redis.call('HEXISTS', meta, 'ended') == 1 then ttl = graceTtl end
redis.call('EXPIRE', log, ttl)
redis.call('EXPIRE', meta, ttl)
return { string.sub(redis.sha1hex(generation .. '/' .. born), 1, 16), first }
`;

/**
 * ARGV: prefix, jobId, since epoch ('' for none), since seq, count
 * -> { epoch ('' when Redis has no generation or the job no log), last seq, gap (1/0), id, text, id, text, ... }
 * Entries after `since` when the log continues from it, else (a gap) from the oldest kept.
 */
export const readEventsScript = `
local prefix, jobId = ARGV[1], ARGV[2]
local sinceEpoch, sinceSeq, count = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local log = prefix .. ':job-events:' .. jobId
local meta = log .. ':meta'
local generation = redis.call('GET', prefix .. ':generation')
local born = redis.call('HGET', meta, 'born')
if not generation or not born then
  -- No log: none was written yet (it begins at seq 1), or it is gone (expired, or Redis lost it).
  return { '', 0, (sinceEpoch ~= '') and 1 or 0 }
end
local epoch = string.sub(redis.sha1hex(generation .. '/' .. born), 1, 16)
local last = tonumber(redis.call('HGET', meta, 'seq') or '0')
local reply = { epoch, last, 0 }
if sinceEpoch == '' then return reply end
local from = sinceSeq + 1
if sinceEpoch ~= epoch or sinceSeq > last then
  reply[3] = 1
  from = 1
end
local entries = redis.call('XRANGE', log, from .. '-0', '+', 'COUNT', count)
if reply[3] == 0 and from <= last then
  local firstSeq = #entries > 0 and tonumber(string.match(entries[1][1], '^(%d+)')) or (last + 1)
  if firstSeq > from then reply[3] = 1 end
end
for _, entry in ipairs(entries) do
  table.insert(reply, entry[1])
  table.insert(reply, entry[2][2])
end
return reply
`;

/** What a read of the log gives: where it stands, whether it continues from the asked-for cursor, and the logged entries. */
export interface LoggedPage {
  cursor: JobEventCursor | null;
  gap: boolean;
  entries: Array<{ seq: number; text: string }>;
}

@Injectable()
export class JobEventLog {
  /** A running job's log expires this long after its last event (a job that says nothing for a week starts a new epoch). */
  static readonly idleTtlSeconds = 7 * 24 * 3600;
  private readonly scripts: Record<'append' | 'read', ScriptRunner>;
  private readonly prefix: string;

  constructor(connections: RedisConnections, @Inject(SCHEDULER_ENV) private readonly env: SchedulerEnv) {
    this.prefix = connections.prefix;
    this.scripts = connections.scripts('commune_job_events', { append: appendEventsScript, read: readEventsScript });
  }

  /** Numbers and appends `texts` (one script call); the cursor of the first. `ending`: the job ended, the log expires after the grace period. */
  async append(jobId: string, texts: string[], ending: boolean): Promise<JobEventCursor> {
    const reply = (await this.scripts.append(
      this.prefix, jobId, this.env.JOB_EVENT_LOG_LENGTH, this.env.JOB_EVENT_LOG_BYTES, JobEventLog.idleTtlSeconds,
      this.env.JOB_EVENT_LOG_GRACE_SECONDS, ending ? '1' : '0', randomUUID(), ...texts,
    )) as [string, number];
    return { epoch: reply[0], seq: Number(reply[1]) };
  }

  /** Entries after `since` (at most JobEventLimits.maxEventsPerPage), or only where the log stands without it. */
  async read(jobId: string, since: JobEventCursor | undefined): Promise<LoggedPage> {
    const reply = (await this.scripts.read(this.prefix, jobId, since?.epoch ?? '', since?.seq ?? 0, JobEventLimits.maxEventsPerPage)) as Array<string | number>;
    const epoch = String(reply[0]);
    const entries: LoggedPage['entries'] = [];
    for (let i = 3; i + 1 < reply.length; i += 2) entries.push({ seq: Number.parseInt(String(reply[i]), 10), text: String(reply[i + 1]) });
    return { cursor: epoch === '' ? null : { epoch, seq: Number(reply[1]) }, gap: Number(reply[2]) === 1, entries };
  }
}
