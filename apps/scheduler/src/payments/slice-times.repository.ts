import { Injectable } from '@nestjs/common';
import { RedisConnections, type ScriptRunner } from '../redis/redis.module.js';
import { PaymentBounds } from './domain/pricing.js';

/**
 * A paid job's recent accepted slice times (P:job:<id>:slicetimes, a list of the last
 * PaymentBounds.samplesKept), and the bound they set on the next ones: once the job has
 * minPeerSamples, a slice time above outlierFactor x their median is an outlier, bounded to that,
 * and not kept as a sample (so outliers cannot raise the median they are judged by).
 * ARGV: prefix, jobId, factor, minSamples, keep, ttlMs, ms... Returns (bounded ms as text, 1|0 outlier) per ms.
 */
export const peerBoundScript = `
local P, jobId = ARGV[1], ARGV[2]
local factor, minSamples, keep, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local key = P .. ':job:' .. jobId .. ':slicetimes'
local samples = redis.call('LRANGE', key, 0, -1)
local limit = nil
if #samples >= minSamples then
  local nums = {}
  for i, v in ipairs(samples) do nums[i] = tonumber(v) or 0 end
  table.sort(nums)
  limit = factor * math.max(nums[math.floor((#nums + 1) / 2)], 1)
end
local out = {}
local kept = 0
for i = 7, #ARGV do
  local ms = tonumber(ARGV[i]) or 0
  if limit and ms > limit then
    table.insert(out, string.format('%.3f', limit))
    table.insert(out, 1)
  else
    redis.call('LPUSH', key, string.format('%.3f', ms))
    kept = kept + 1
    table.insert(out, string.format('%.3f', ms))
    table.insert(out, 0)
  end
end
if kept > 0 then
  redis.call('LTRIM', key, 0, keep - 1)
  redis.call('PEXPIRE', key, ttl)
end
return out
`;

/**
 * After Redis lost a job's samples: older times (from PostgreSQL) go at the tail of the list, only
 * while it holds fewer than minSamples (so the replicas that all recover do not add them twice, and
 * samples pushed since the loss stay the newest). ARGV: prefix, jobId, minSamples, keep, ttlMs, ms (newest first)...
 * Returns how many were added.
 */
export const seedScript = `
local P, jobId = ARGV[1], ARGV[2]
local minSamples, keep, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local key = P .. ':job:' .. jobId .. ':slicetimes'
if redis.call('LLEN', key) >= minSamples then return 0 end
local added = 0
for i = 6, #ARGV do
  redis.call('RPUSH', key, string.format('%.3f', tonumber(ARGV[i]) or 0))
  added = added + 1
end
if added > 0 then
  redis.call('LTRIM', key, 0, keep - 1)
  redis.call('PEXPIRE', key, ttl)
end
return added
`;

/** The per-job peer bound on paid slice times, in Redis (shared by every replica). */
@Injectable()
export class SliceTimesRepository {
  private readonly prefix: string;
  private readonly scripts: Record<'peerBound' | 'seed', ScriptRunner>;

  constructor(connections: RedisConnections) {
    this.prefix = connections.prefix;
    this.scripts = connections.scripts('commune_payments', { peerBound: peerBoundScript, seed: seedScript });
  }

  /** Each of `times` (ms, already bounded by observation) bounded by the job's peers, and whether it was an outlier. */
  async bound(jobId: string, times: number[]): Promise<Array<{ ms: number; outlier: boolean }>> {
    if (times.length === 0) return [];
    const reply = (await this.scripts.peerBound(
      this.prefix, jobId, PaymentBounds.outlierFactor, PaymentBounds.minPeerSamples, PaymentBounds.samplesKept, PaymentBounds.samplesTtlMs, ...times,
    )) as Array<string | number>;
    const bounded: Array<{ ms: number; outlier: boolean }> = [];
    for (let i = 0; i < times.length; i++) bounded.push({ ms: Number(reply[2 * i]) || 0, outlier: Number(reply[2 * i + 1]) === 1 });
    return bounded;
  }

  /** Gives back a job's samples that Redis lost (`msNewestFirst` from stored payments); 0 when it already has enough. */
  async seed(jobId: string, msNewestFirst: number[]): Promise<number> {
    if (msNewestFirst.length === 0) return 0;
    const sample = msNewestFirst.slice(0, PaymentBounds.samplesKept);
    return Number(await this.scripts.seed(this.prefix, jobId, PaymentBounds.minPeerSamples, PaymentBounds.samplesKept, PaymentBounds.samplesTtlMs, ...sample));
  }
}
