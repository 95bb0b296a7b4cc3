/**
 * Lua scripts that make leasing atomic across scheduler replicas. Keys, under a prefix P:
 *   P:ready                 ZSET  jobId -> slices handed out (fair share: least served first)
 *   P:job:<id>              HASH  total, cursor (next never-leased slice), status
 *   P:job:<id>:requeue      LIST  slices put back (expired, returned, failed, worker gone)
 *   P:task:<tid>            HASH  jobId, workerId, deadline, leasedAt (ms), spent (ms of slice time
 *                                  credited to its results so far, see claimScript)
 *   P:task:<tid>:slices     SET   slices of the task still awaiting a result
 *   P:leases                ZSET  taskId -> lease deadline (ms)
 *   P:worker:<wid>:tasks    SET   taskIds leased to a worker
 *   P:worker:<wid>:leased   STRING slices leased to a worker and awaiting a result (the lease cap);
 *                                  deleted when it falls to 0
 *   P:worker:<wid>:connection STRING (with a TTL) the socket id of the worker's latest connection: a
 *                                  disconnect of an older one (seen late, on another replica) does
 *                                  not put back leases the worker still works on
 * <wid> is the lease owner: derived from the worker's id (see domain/lease-owner.ts), the same on
 * every connection of one worker process, so a worker that reconnects (to any replica) after its
 * replica drained or died still holds its leases and its results are taken.
 *   P:job:<id>:unmet        STRING set (with a TTL) when a worker asking for work skipped the job
 *                                  because it does not meet the job's requirements
 *   P:job:<id>:met          STRING set (with the same TTL) when the job was leased; while it exists
 *                                  no skip marks the job unmet (some worker can run it)
 * Slicing is lazy: a job's never-leased slices are only the integer `cursor`, so a job of 10^9
 * slices costs the same Redis memory as one of 10. Per slice, work is O(1).
 */

/**
 * Shared Lua: lower a worker's count of leased slices, deleting it at 0 (a missing count reads as 0),
 * so a worker that went away without a release (its replica drained or died) leaves no key behind
 * once its leases are claimed or swept.
 */
const decreaseLeasedFunction = `
local function decrease_leased(P, workerId, count)
  local key = P .. ':worker:' .. workerId .. ':leased'
  if redis.call('DECRBY', key, count) <= 0 then redis.call('DEL', key) end
end
`;

/** Shared Lua: put a task's remaining slices back on its job's queue and forget the task. */
const releaseTaskFunction = decreaseLeasedFunction + `
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
  if #slices > 0 then decrease_leased(P, workerId, #slices) end
  if redis.call('SCARD', setKey) == 0 then
    redis.call('DEL', taskKey)
    redis.call('ZREM', P .. ':leases', taskId)
    redis.call('SREM', P .. ':worker:' .. workerId .. ':tasks', taskId)
  end
  return #slices
end
`;

/** What the lease script answers instead of a lease when the worker already holds its cap of leased slices. */
export const leaseCapReply = '!cap';

/**
 * ARGV: prefix, workerId, taskId, maxSlices, deadline, candidates, minWage, paidWork, unmetTtlMs, cap, now, skipJobId...
 * The skipped jobs (whose requirements this worker does not meet) keep their place in the fair
 * share; they are marked unmet for unmetTtlMs unless some worker leased them within that time.
 * `cap` (> 0) bounds the slices the worker may hold leased at once (P:worker:<wid>:leased).
 * Returns {jobId, slice...} for the least-served job with slices available, {'!cap', held} when
 * the worker is at its cap, or {}.
 */
export const leaseScript = `
local P, workerId, taskId = ARGV[1], ARGV[2], ARGV[3]
local maxSlices, deadline, candidates = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local minWage, paidWork = tonumber(ARGV[7] or '0'), ARGV[8] == '1'
local unmetTtl = tonumber(ARGV[9] or '0')
local cap, now = tonumber(ARGV[10] or '0'), ARGV[11] or '0'
local skip = {}
for i = 12, #ARGV do skip[ARGV[i]] = true end
local leasedKey = P .. ':worker:' .. workerId .. ':leased'
if cap > 0 then
  local held = tonumber(redis.call('GET', leasedKey) or '0')
  -- never below 0 (a counter that lost updates with Redis must not open a wider cap)
  if held < 0 then
    redis.call('SET', leasedKey, 0)
    held = 0
  end
  if held >= cap then return {'!cap', tostring(held)} end
  maxSlices = math.min(maxSlices, cap - held)
end
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
      redis.call('HSET', taskKey, 'jobId', jobId, 'workerId', workerId, 'deadline', deadline, 'leasedAt', now, 'spent', 0)
      for i = 1, #slices, 1000 do
        redis.call('SADD', taskKey .. ':slices', unpack(slices, i, math.min(i + 999, #slices)))
      end
      redis.call('INCRBY', leasedKey, #slices)
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
 * lease. The lease is renewed to `deadline` only when the call claimed at least one slice the task
 * still held (refused results never keep a lease alive).
 *
 * It also bounds the slice time each claimed result may be paid for by what the scheduler saw:
 * no slice ran longer than the time since the task was leased (nor than sliceLimitMs), and the
 * slices of one task together ran at most (now - leasedAt) x sandboxes, minus what earlier results
 * of the task were credited ('spent'). Over that budget, the claimed times are scaled down to fit.
 * ARGV: prefix, taskId, workerId, deadline, now, sandboxes, sliceLimitMs, then (slice, reportedMs) pairs.
 * Returns {jobId or '', n, 1|0 per slice..., bounded ms per slice (as text)...}.
 */
export const claimScript = decreaseLeasedFunction + `
local P, taskId, workerId, deadline = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, sandboxes, sliceLimit = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n = (#ARGV - 7) / 2
local taskKey = P .. ':task:' .. taskId
local owner = redis.call('HMGET', taskKey, 'jobId', 'workerId', 'leasedAt', 'spent')
local out = {}
if not owner[1] or owner[2] ~= workerId then
  table.insert(out, '')
  table.insert(out, n)
  for i = 1, 2 * n do table.insert(out, 0) end
  return out
end
table.insert(out, owner[1])
table.insert(out, n)
local setKey = taskKey .. ':slices'
local flags, bounded = {}, {}
local claimedCount, sum = 0, 0
local observed = math.max(0, now - tonumber(owner[3] or now))
local perSlice = math.min(observed, sliceLimit)
for i = 1, n do
  local flag = redis.call('SREM', setKey, ARGV[6 + 2 * i])
  flags[i] = flag
  local ms = 0
  if flag == 1 then
    claimedCount = claimedCount + 1
    ms = math.min(math.max(tonumber(ARGV[7 + 2 * i]) or 0, 0), perSlice)
    sum = sum + ms
  end
  bounded[i] = ms
end
local budget = math.max(0, observed * sandboxes - tonumber(owner[4] or '0'))
if sum > budget then
  local scale = budget / sum
  sum = 0
  for i = 1, n do
    bounded[i] = bounded[i] * scale
    sum = sum + bounded[i]
  end
end
for i = 1, n do table.insert(out, flags[i]) end
for i = 1, n do table.insert(out, string.format('%.3f', bounded[i])) end
if claimedCount > 0 then decrease_leased(P, workerId, claimedCount) end
if redis.call('SCARD', setKey) == 0 then
  redis.call('DEL', taskKey)
  redis.call('ZREM', P .. ':leases', taskId)
  redis.call('SREM', P .. ':worker:' .. workerId .. ':tasks', taskId)
elseif claimedCount > 0 then
  redis.call('HINCRBYFLOAT', taskKey, 'spent', string.format('%.3f', sum))
  redis.call('ZADD', P .. ':leases', 'XX', deadline, taskId)
end
return out
`;

/**
 * Which of `slices` of job `jobId` are leased to `workerId` right now (in task `taskId` when it is
 * not ''): console and custom events are taken only for those. The work is bounded by the slices
 * the worker holds: per task, the smaller of its slices and the slices asked about is looked at.
 * ARGV: prefix, workerId, jobId, taskId or '', slice... Returns 1|0 per slice.
 */
export const heldScript = `
local P, workerId, jobId, taskId = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tasks
if taskId ~= '' then tasks = {taskId} else tasks = redis.call('SMEMBERS', P .. ':worker:' .. workerId .. ':tasks') end
local wanted, held = {}, {}
local asked = 0
for i = 5, #ARGV do
  if not wanted[ARGV[i]] then asked = asked + 1 end
  wanted[ARGV[i]] = true
end
for _, t in ipairs(tasks) do
  local owner = redis.call('HMGET', P .. ':task:' .. t, 'jobId', 'workerId')
  if owner[1] == jobId and owner[2] == workerId then
    local setKey = P .. ':task:' .. t .. ':slices'
    if redis.call('SCARD', setKey) <= asked then
      for _, s in ipairs(redis.call('SMEMBERS', setKey)) do
        if wanted[s] then held[s] = true end
      end
    else
      for s in pairs(wanted) do
        if not held[s] and redis.call('SISMEMBER', setKey, s) == 1 then held[s] = true end
      end
    end
  end
end
local out = {}
for i = 5, #ARGV do
  if held[ARGV[i]] then table.insert(out, 1) else table.insert(out, 0) end
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

/**
 * Returns every task of a worker whose connection `connectionId` went away, unless the worker has
 * connected again since (its connection key names another socket: it still works on those slices).
 * ARGV: prefix, workerId, connectionId. Returns the slices put back, or -1 when the worker is connected elsewhere.
 */
export const releaseWorkerScript = releaseTaskFunction + `
local P, workerId, connectionId = ARGV[1], ARGV[2], ARGV[3]
local workerKey = P .. ':worker:' .. workerId
local current = redis.call('GET', workerKey .. ':connection')
if current and current ~= connectionId then return -1 end
local count = 0
for _, taskId in ipairs(redis.call('SMEMBERS', workerKey .. ':tasks')) do
  count = count + release_task(P, taskId, nil)
end
redis.call('DEL', workerKey .. ':tasks', workerKey .. ':leased', workerKey .. ':connection')
return count
`;

/**
 * Records a worker's new connection (see P:worker:<wid>:connection) and answers how many slices the
 * worker holds leased from earlier connections. ARGV: prefix, workerId, connectionId, ttlMs.
 */
export const attachWorkerScript = `
local P, workerId, connectionId, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local workerKey = P .. ':worker:' .. workerId
redis.call('SET', workerKey .. ':connection', connectionId, 'PX', ttl)
return math.max(0, tonumber(redis.call('GET', workerKey .. ':leased') or '0'))
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

/** Shared Lua: push slices given as inclusive ranges (ARGV[from], ARGV[from + 1], ...) on a job's requeue list, 1000 per RPUSH. */
const pushRangesFunction = `
local function push_ranges(listKey, from)
  local pushed, batch = 0, {}
  for i = from, #ARGV - 1, 2 do
    for s = tonumber(ARGV[i]), tonumber(ARGV[i + 1]) do
      batch[#batch + 1] = string.format('%d', s)
      if #batch == 1000 then
        redis.call('RPUSH', listKey, unpack(batch))
        pushed = pushed + #batch
        batch = {}
      end
    end
  end
  if #batch > 0 then
    redis.call('RPUSH', listKey, unpack(batch))
    pushed = pushed + #batch
  end
  return pushed
end
`;

/**
 * Rebuilds a job's dispatch state that Redis lost, from what Postgres knows: `cursor` is the
 * first slice never handed out (past every journalled lease and every result), the ranges are the
 * slices below it with no result (they go on the requeue list). A job whose key exists (opened by
 * its deploy, or rebuilt by another replica meanwhile) is left as it is.
 * ARGV: prefix, jobId, total, cursor, status ('running' | 'paused'), offer, escrowed, then (first, last) pairs.
 * Returns the slices queued, or -1 when the job already had a state.
 */
export const rebuildJobScript = releaseTaskFunction + pushRangesFunction + `
local P, jobId, total, cursor, status, offer, escrowed = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local jobKey = P .. ':job:' .. jobId
if redis.call('EXISTS', jobKey) == 1 then return -1 end
redis.call('HSET', jobKey, 'total', total, 'cursor', cursor, 'status', status, 'offer', offer, 'escrowed', escrowed)
local queued = push_ranges(jobKey .. ':requeue', 8)
local limit = math.min(tonumber(total), tonumber(escrowed))
if status == 'running' and (queued > 0 or tonumber(cursor) < limit) then
  redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId)
end
return queued
`;

/**
 * Puts back slices given as inclusive ranges (slices with neither a result nor a lease, found by
 * the reconciler). ARGV: prefix, jobId, then (first, last) pairs. Returns the slices queued.
 */
export const requeueRangesScript = releaseTaskFunction + pushRangesFunction + `
local P, jobId = ARGV[1], ARGV[2]
local jobKey = P .. ':job:' .. jobId
local jobStatus = redis.call('HGET', jobKey, 'status')
if jobStatus ~= 'running' and jobStatus ~= 'paused' then return 0 end
local queued = push_ranges(jobKey .. ':requeue', 3)
if queued > 0 and jobStatus == 'running' then redis.call('ZADD', P .. ':ready', 'NX', ready_min_score(P), jobId) end
return queued
`;
