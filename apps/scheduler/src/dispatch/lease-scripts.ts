/**
 * Lua scripts that make leasing atomic across scheduler replicas. Keys, under a prefix P:
 *   P:ready                 ZSET  jobId -> slices handed out (fair share: least served first)
 *   P:job:<id>              HASH  total, cursor (next never-leased slice), status
 *   P:job:<id>:requeue      LIST  slices put back (expired, returned, failed, worker gone)
 *   P:task:<tid>            HASH  jobId, workerId, deadline
 *   P:task:<tid>:slices     SET   slices of the task still awaiting a result
 *   P:leases                ZSET  taskId -> lease deadline (ms)
 *   P:worker:<wid>:tasks    SET   taskIds leased to a worker
 *   P:job:<id>:unmet        STRING set (with a TTL) when a worker asking for work skipped the job
 *                                  because it does not meet the job's requirements
 *   P:job:<id>:met          STRING set (with the same TTL) when the job was leased; while it exists
 *                                  no skip marks the job unmet (some worker can run it)
 * Slicing is lazy: a job's never-leased slices are only the integer `cursor`, so a job of 10^9
 * slices costs the same Redis memory as one of 10. Per slice, work is O(1).
 */

/** Shared Lua: put a task's remaining slices back on its job's queue and forget the task. */
const releaseTaskFunction = `
local function ready_min_score(P)
  local lowest = redis.call('ZRANGE', P .. ':ready', 0, 0, 'WITHSCORES')
  if lowest[2] then return lowest[2] end
  return 0
end
local function release_task(P, taskId, onlyThese)
  local taskKey = P .. ':task:' .. taskId
  local jobId = redis.call('HGET', taskKey, 'jobId')
  if not jobId then return 0 end
  local workerId = redis.call('HGET', taskKey, 'workerId')
  local setKey = taskKey .. ':slices'
  local slices
  if onlyThese then
    slices = {}
    for _, s in ipairs(onlyThese) do
      if redis.call('SREM', setKey, s) == 1 then table.insert(slices, s) end
    end
  else
    slices = redis.call('SMEMBERS', setKey)
    redis.call('DEL', setKey)
  end
  local jobKey = P .. ':job:' .. jobId
  local jobStatus = redis.call('HGET', jobKey, 'status')
  -- A paused job keeps its put-back slices queued; it is ready again when resumed.
  if #slices > 0 and (jobStatus == 'running' or jobStatus == 'paused') then
    for i = 1, #slices, 1000 do
      redis.call('RPUSH', jobKey .. ':requeue', unpack(slices, i, math.min(i + 999, #slices)))
    end
    if jobStatus == 'running' then redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId) end
  end
  if redis.call('SCARD', setKey) == 0 then
    redis.call('DEL', taskKey)
    redis.call('ZREM', P .. ':leases', taskId)
    redis.call('SREM', P .. ':worker:' .. workerId .. ':tasks', taskId)
  end
  return #slices
end
`;

/**
 * ARGV: prefix, workerId, taskId, maxSlices, deadline, candidates, minWage, paidWork, unmetTtlMs, skipJobId...
 * The skipped jobs (whose requirements this worker does not meet) keep their place in the fair
 * share; they are marked unmet for unmetTtlMs unless some worker leased them within that time.
 * Returns {jobId, slice...} for the least-served job with slices available, or {}.
 */
export const leaseScript = `
local P, workerId, taskId = ARGV[1], ARGV[2], ARGV[3]
local maxSlices, deadline, candidates = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local minWage, paidWork = tonumber(ARGV[7] or '0'), ARGV[8] == '1'
local unmetTtl = tonumber(ARGV[9] or '0')
local skip = {}
for i = 10, #ARGV do skip[ARGV[i]] = true end
local jobs = redis.call('ZRANGE', P .. ':ready', 0, candidates - 1)
for _, jobId in ipairs(jobs) do
  local jobKey = P .. ':job:' .. jobId
  local job = redis.call('HMGET', jobKey, 'total', 'cursor', 'status', 'offer', 'escrowed')
  local offer = tonumber(job[4] or '0')
  if not job[1] or job[3] ~= 'running' then
    redis.call('ZREM', P .. ':ready', jobId)
  elseif skip[jobId] then
    -- this worker does not meet the job's requirements: skip it, it keeps its fair-share place
    if unmetTtl > 0 and redis.call('EXISTS', jobKey .. ':met') == 0 then
      redis.call('SET', jobKey .. ':unmet', '1', 'PX', unmetTtl)
    end
  elseif offer < minWage or (offer > 0 and not paidWork) then
    -- below this worker's minimum wage, or paid work for a worker with no earnings account: skip
  else
    local slices = {}
    local requeued = redis.call('LPOP', jobKey .. ':requeue', maxSlices)
    if requeued then slices = requeued end
    local total, cursor = tonumber(job[1]), tonumber(job[2])
    -- a paid job hands out only slices its escrow covers (re-escrow raises 'escrowed')
    local limit = total
    if job[5] then limit = math.min(total, tonumber(job[5])) end
    local fresh = math.min(maxSlices - #slices, limit - cursor)
    if fresh > 0 then
      redis.call('HINCRBY', jobKey, 'cursor', fresh)
      for s = cursor, cursor + fresh - 1 do table.insert(slices, string.format('%d', s)) end
    end
    if #slices == 0 then
      redis.call('ZREM', P .. ':ready', jobId)
    else
      if cursor + math.max(fresh, 0) >= limit and redis.call('LLEN', jobKey .. ':requeue') == 0 then
        redis.call('ZREM', P .. ':ready', jobId)
      else
        redis.call('ZINCRBY', P .. ':ready', #slices, jobId)
      end
      local taskKey = P .. ':task:' .. taskId
      redis.call('HSET', taskKey, 'jobId', jobId, 'workerId', workerId, 'deadline', deadline)
      for i = 1, #slices, 1000 do
        redis.call('SADD', taskKey .. ':slices', unpack(slices, i, math.min(i + 999, #slices)))
      end
      redis.call('ZADD', P .. ':leases', deadline, taskId)
      redis.call('SADD', P .. ':worker:' .. workerId .. ':tasks', taskId)
      redis.call('DEL', jobKey .. ':unmet')
      if unmetTtl > 0 then redis.call('SET', jobKey .. ':met', '1', 'PX', unmetTtl) end
      table.insert(slices, 1, jobId)
      return slices
    end
  end
end
return {}
`;

/**
 * Claims slices of a task for a result: each is claimed once, and only by the worker holding the
 * lease. A task that is still producing results has its lease renewed to `deadline`.
 * ARGV: prefix, taskId, workerId, deadline, slice... Returns {jobId or '', 1|0 per slice}.
 */
export const claimScript = `
local P, taskId, workerId, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local taskKey = P .. ':task:' .. taskId
local owner = redis.call('HMGET', taskKey, 'jobId', 'workerId')
local out = {}
if not owner[1] or owner[2] ~= workerId then
  table.insert(out, '')
  for i = 5, #ARGV do table.insert(out, 0) end
  return out
end
table.insert(out, owner[1])
local setKey = taskKey .. ':slices'
for i = 5, #ARGV do table.insert(out, redis.call('SREM', setKey, ARGV[i])) end
if redis.call('SCARD', setKey) == 0 then
  redis.call('DEL', taskKey)
  redis.call('ZREM', P .. ':leases', taskId)
  redis.call('SREM', P .. ':worker:' .. workerId .. ':tasks', taskId)
else
  redis.call('ZADD', P .. ':leases', 'XX', deadline, taskId)
end
return out
`;

/** Returns slices of a task (all when none are named) to its job. ARGV: prefix, taskId, workerId, slice... */
export const returnScript = releaseTaskFunction + `
local P, taskId, workerId = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', P .. ':task:' .. taskId, 'workerId') ~= workerId then return 0 end
if #ARGV > 3 then
  local only = {}
  for i = 4, #ARGV do table.insert(only, ARGV[i]) end
  return release_task(P, taskId, only)
end
return release_task(P, taskId, nil)
`;

/** Returns every task of a worker that went away. ARGV: prefix, workerId. */
export const releaseWorkerScript = releaseTaskFunction + `
local P, workerId = ARGV[1], ARGV[2]
local count = 0
for _, taskId in ipairs(redis.call('SMEMBERS', P .. ':worker:' .. workerId .. ':tasks')) do
  count = count + release_task(P, taskId, nil)
end
redis.call('DEL', P .. ':worker:' .. workerId .. ':tasks')
return count
`;

/** Returns the slices of leases past their deadline. ARGV: prefix, now, limit. Returns slices requeued. */
export const sweepScript = releaseTaskFunction + `
local P, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local count = 0
for _, taskId in ipairs(redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, limit)) do
  local released = release_task(P, taskId, nil)
  if redis.call('EXISTS', P .. ':task:' .. taskId) == 0 then redis.call('ZREM', P .. ':leases', taskId) end
  count = count + released
end
return count
`;

/** Puts single slices back on a job's queue (after a failed attempt). ARGV: prefix, jobId, slice... */
export const requeueScript = releaseTaskFunction + `
local P, jobId = ARGV[1], ARGV[2]
local jobKey = P .. ':job:' .. jobId
local jobStatus = redis.call('HGET', jobKey, 'status')
if jobStatus ~= 'running' and jobStatus ~= 'paused' then return 0 end
for i = 3, #ARGV do redis.call('RPUSH', jobKey .. ':requeue', ARGV[i]) end
if jobStatus == 'running' then redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId) end
return #ARGV - 2
`;

/** Registers a deployed job. ARGV: prefix, jobId, total. */
export const openJobScript = releaseTaskFunction + `
local P, jobId, total, offer, escrowed, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4] or '0', ARGV[5] or ARGV[3], ARGV[6] or 'running'
local jobKey = P .. ':job:' .. jobId
if redis.call('EXISTS', jobKey) == 1 then return 0 end
redis.call('HSET', jobKey, 'total', total, 'cursor', 0, 'status', status, 'offer', offer, 'escrowed', escrowed)
if tonumber(total) > 0 and status == 'running' then redis.call('ZADD', P .. ':ready', ready_min_score(P), jobId) end
return 1
`;

/**
 * Pauses or resumes a job's dispatch (a paused job keeps its cursor and put-back slices but is not
 * ready). ARGV: prefix, jobId, 'paused' | 'running'. Returns 1 when the job's state changed.
 */
export const setRunningScript = releaseTaskFunction + `
local P, jobId, wanted = ARGV[1], ARGV[2], ARGV[3]
local jobKey = P .. ':job:' .. jobId
local job = redis.call('HMGET', jobKey, 'total', 'cursor', 'status')
if not job[1] or (job[3] ~= 'running' and job[3] ~= 'paused') then return 0 end
redis.call('HSET', jobKey, 'status', wanted)
if wanted == 'paused' then
  redis.call('ZREM', P .. ':ready', jobId)
elseif tonumber(job[2]) < tonumber(job[1]) or redis.call('LLEN', jobKey .. ':requeue') > 0 then
  redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId)
end
return 1
`;

/**
 * Raises how many slices a paid job's escrow covers and makes it ready again. It never lowers it:
 * escrow steps that finish out of order (deploy, re-escrow, job.escrow()) cannot undo each other.
 * ARGV: prefix, jobId, escrowed.
 */
export const setEscrowedScript = releaseTaskFunction + `
local P, jobId, escrowed = ARGV[1], ARGV[2], ARGV[3]
local jobKey = P .. ':job:' .. jobId
if redis.call('EXISTS', jobKey) == 0 then return 0 end
local current = tonumber(redis.call('HGET', jobKey, 'escrowed') or '0')
if tonumber(escrowed) > current then redis.call('HSET', jobKey, 'escrowed', escrowed) end
if redis.call('HGET', jobKey, 'status') == 'running' then redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId) end
return 1
`;
