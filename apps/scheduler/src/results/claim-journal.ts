import type { Redis } from 'ioredis';
import { claimScript } from '../dispatch/lease-scripts.js';
import type { Claim, ClaimBounds } from '../dispatch/lease.repository.js';
import type { RedisConnections, ScriptRunner } from '../redis/redis.module.js';

/**
 * The claim journal: results claimed in Redis but not yet stored in PostgreSQL. Keys, under P:
 *   P:claims            ZSET  claimId -> deadline (ms): when the claim is given up for lost
 *   P:claim:<claimId>   HASH  jobId, taskId, workerId, leasedAt and spent (the task's, before the
 *                             claim), slices ("slice:creditedMs,...", the slices this claim took);
 *                             kind 'restored' once given back to the worker's lease for a resend
 * A claim is journaled in the same script that claims (lease-scripts' claimScript, unchanged, run
 * as a function), so no claim exists without its entry. The batch that stored its results drops
 * the entry; one whose storing failed (PostgreSQL down) gives the slices back to the worker's lease
 * so the worker, answered EUNAVAILABLE, can send the same results again instead of computing them
 * again, for a short time (the entry becomes 'restored'; those not sent again by its deadline go
 * to the job's queue); and an entry past its deadline (its scheduler died between claim and
 * insert) is swept: its slices go back on their job's queue within seconds, not at the job's end.
 */

/** Shared Lua: split "a:b,c:d" into slices and credited ms; the lowest fair-share score (as the lease scripts use). */
const helpers = `
local function parse_slices(text)
  local slices, credited = {}, {}
  for item in string.gmatch(text or '', '[^,]+') do
    local s, ms = string.match(item, '^([^:]+):(.*)$')
    table.insert(slices, s)
    credited[s] = tonumber(ms) or 0
  end
  return slices, credited
end
local function ready_min_score(P)
  local lowest = redis.call('ZRANGE', P .. ':ready', 0, 0, 'WITHSCORES')
  if lowest[2] then return lowest[2] end
  return 0
end
local function requeue(P, jobId, slices)
  local jobKey = P .. ':job:' .. jobId
  local status = redis.call('HGET', jobKey, 'status')
  if #slices == 0 or (status ~= 'running' and status ~= 'paused') then return 0 end
  for i = 1, #slices, 1000 do
    redis.call('RPUSH', jobKey .. ':requeue', unpack(slices, i, math.min(i + 999, #slices)))
  end
  if status == 'running' then redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId) end
  return #slices
end
`;

/**
 * claimScript, journaled. ARGV: claimScript's own (prefix, taskId, workerId, deadline, now,
 * sandboxes, sliceLimitMs, (slice, reportedMs) pairs), then claimId, journal deadline (ms).
 * Returns what claimScript returns.
 */
export const journaledClaimScript = `
local claimId, journalDeadline = ARGV[#ARGV - 1], ARGV[#ARGV]
-- claimScript reads its own ARGV: the same without the journal's two
local args = {}
for i = 1, #ARGV - 2 do args[i] = ARGV[i] end
local ARGV = args
local function claim()
${claimScript}
end
local P, taskId, workerId = ARGV[1], ARGV[2], ARGV[3]
local before = redis.call('HMGET', P .. ':task:' .. taskId, 'leasedAt', 'spent')
local out = claim()
local n = tonumber(out[2])
if out[1] ~= '' and n > 0 then
  local taken = {}
  for i = 1, n do
    if tonumber(out[2 + i]) == 1 then table.insert(taken, ARGV[6 + 2 * i] .. ':' .. out[2 + n + i]) end
  end
  if #taken > 0 then
    redis.call('HSET', P .. ':claim:' .. claimId, 'jobId', out[1], 'taskId', taskId, 'workerId', workerId,
      'leasedAt', before[1] or '0', 'spent', before[2] or '0', 'slices', table.concat(taken, ','))
    redis.call('ZADD', P .. ':claims', journalDeadline, claimId)
  end
end
return out
`;

/**
 * Gives slices of a claim back to the lease they were claimed from (recreated if the claim took
 * its last slices), so the worker can send their results again, until `deadline`: the entry
 * becomes a 'restored' one, and the sweep takes back at `deadline` whichever of them the worker
 * did not claim again. Slices not named stay claimed (they were stored). A job no longer running
 * or paused takes nothing back. ARGV: prefix, claimId, deadline, slice... Returns how many slices
 * went back.
 */
export const restoreClaimScript = helpers + `
local P, claimId, deadline = ARGV[1], ARGV[2], ARGV[3]
local key = P .. ':claim:' .. claimId
local c = redis.call('HMGET', key, 'jobId', 'taskId', 'workerId', 'leasedAt', 'spent', 'slices', 'kind')
if not c[1] or c[7] == 'restored' then return 0 end
redis.call('DEL', key)
redis.call('ZREM', P .. ':claims', claimId)
local jobId, taskId, workerId = c[1], c[2], c[3]
local status = redis.call('HGET', P .. ':job:' .. jobId, 'status')
if status ~= 'running' and status ~= 'paused' then return 0 end
local _, credited = parse_slices(c[6])
local slices, refund = {}, 0
for i = 4, #ARGV do
  if credited[ARGV[i]] then
    table.insert(slices, ARGV[i])
    refund = refund + credited[ARGV[i]]
    credited[ARGV[i]] = nil
  end
end
if #slices == 0 then return 0 end
local taskKey = P .. ':task:' .. taskId
local owner = redis.call('HMGET', taskKey, 'jobId', 'workerId')
if owner[1] and (owner[1] ~= jobId or owner[2] ~= workerId) then
  -- the task id now names another lease (it cannot, ids are fresh): the job's queue takes them
  return requeue(P, jobId, slices)
end
if owner[1] then
  -- the task is still out (its deadline unchanged): the time credited to the failed results is credited again on resend
  redis.call('HINCRBYFLOAT', taskKey, 'spent', string.format('%.3f', -refund))
else
  redis.call('HSET', taskKey, 'jobId', jobId, 'workerId', workerId, 'deadline', deadline, 'leasedAt', c[4], 'spent', c[5])
  redis.call('SADD', P .. ':worker:' .. workerId .. ':tasks', taskId)
  redis.call('ZADD', P .. ':leases', deadline, taskId)
end
for i = 1, #slices, 1000 do
  redis.call('SADD', taskKey .. ':slices', unpack(slices, i, math.min(i + 999, #slices)))
end
redis.call('INCRBY', P .. ':worker:' .. workerId .. ':leased', #slices)
local listed = {}
for i, s in ipairs(slices) do listed[i] = s .. ':0' end
redis.call('HSET', key, 'kind', 'restored', 'jobId', jobId, 'taskId', taskId, 'workerId', workerId, 'slices', table.concat(listed, ','))
redis.call('ZADD', P .. ':claims', deadline, claimId)
return #slices
`;

/**
 * Claims past their deadline (their scheduler died, or could not reach Redis to settle them): their
 * slices go back on their job's queue. Restored entries past their deadline: the slices the worker
 * did not send again leave its lease for the job's queue (the rest of its task stays leased).
 * ARGV: prefix, now, limit. Returns {slices of lost claims requeued, slices not sent again requeued}.
 */
export const sweepClaimsScript = helpers + `
local P, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lost, unsent = 0, 0
for _, claimId in ipairs(redis.call('ZRANGEBYSCORE', P .. ':claims', '-inf', now, 'LIMIT', 0, limit)) do
  local key = P .. ':claim:' .. claimId
  local c = redis.call('HMGET', key, 'jobId', 'slices', 'kind', 'taskId', 'workerId')
  if c[1] then
    local slices = parse_slices(c[2])
    if c[3] == 'restored' then
      local taskKey = P .. ':task:' .. c[4]
      local back = {}
      for _, s in ipairs(slices) do
        if redis.call('SREM', taskKey .. ':slices', s) == 1 then table.insert(back, s) end
      end
      if #back > 0 then redis.call('DECRBY', P .. ':worker:' .. c[5] .. ':leased', #back) end
      if redis.call('EXISTS', taskKey) == 1 and redis.call('SCARD', taskKey .. ':slices') == 0 then
        redis.call('DEL', taskKey)
        redis.call('ZREM', P .. ':leases', c[4])
        redis.call('SREM', P .. ':worker:' .. c[5] .. ':tasks', c[4])
      end
      unsent = unsent + requeue(P, c[1], back)
    else
      lost = lost + requeue(P, c[1], slices)
    end
  end
  redis.call('DEL', key)
  redis.call('ZREM', P .. ':claims', claimId)
end
return {lost, unsent}
`;

/** The claim journal's operations (one atomic script or transaction each). */
export class ClaimJournal {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly scripts: Record<'claim' | 'restore' | 'sweep', ScriptRunner>;

  constructor(connections: RedisConnections) {
    this.redis = connections.command;
    this.prefix = connections.prefix;
    this.scripts = connections.scripts('communeclaims', { claim: journaledClaimScript, restore: restoreClaimScript, sweep: sweepClaimsScript });
  }

  /** LeaseRepository.claim, with the claimed slices journaled under `claimId` until `journalDeadline` (ms). */
  async claim(
    claimId: string, taskId: string, workerId: string, slices: ReadonlyArray<{ sliceIndex: number; elapsedMs: number }>, renewedDeadline: number,
    bounds: ClaimBounds, journalDeadline: number,
  ): Promise<Claim> {
    const args: (string | number)[] = [this.prefix, taskId, workerId, renewedDeadline, bounds.now, bounds.sandboxes, bounds.sliceLimitMs];
    for (const slice of slices) args.push(slice.sliceIndex, Number.isFinite(slice.elapsedMs) ? slice.elapsedMs : 0);
    args.push(claimId, journalDeadline);
    const reply = (await this.scripts.claim(...args)) as (string | number)[];
    const jobId = reply[0];
    const n = Number(reply[1]);
    const claimed: boolean[] = [];
    const boundedMs: number[] = [];
    for (let i = 0; i < n; i++) {
      claimed.push(Number(reply[2 + i]) === 1);
      boundedMs.push(Number(reply[2 + n + i]) || 0);
    }
    return { jobId: jobId ? String(jobId) : null, claimed, boundedMs };
  }

  /** The claim's results were stored: forget it. */
  async release(claimId: string): Promise<void> {
    await this.redis.multi().del(`${this.prefix}:claim:${claimId}`).zrem(`${this.prefix}:claims`, claimId).exec();
  }

  /** Gives `sliceIndexes` of the claim back to the worker's lease until `deadline` (then the sweep requeues those not sent again). */
  async restore(claimId: string, sliceIndexes: readonly number[], deadline: number): Promise<number> {
    return Number(await this.scripts.restore(this.prefix, claimId, deadline, ...sliceIndexes));
  }

  /**
   * Puts back on their jobs' queues the slices of claims past their deadline: `lost`, claimed by a
   * scheduler that never stored them; `unsent`, given back to a worker that did not send them again.
   */
  async sweep(now: number, limit = 500): Promise<{ lost: number; unsent: number }> {
    const [lost, unsent] = (await this.scripts.sweep(this.prefix, now, limit)) as [number, number];
    return { lost: Number(lost), unsent: Number(unsent) };
  }

  /** Claims not yet settled (for tests and diagnostics). */
  async pending(): Promise<number> {
    return this.redis.zcard(`${this.prefix}:claims`);
  }
}
