/**
 * Lua scripts that make shared-state operations (spec "Synchronization") atomic across scheduler
 * replicas. Keys, under a prefix P:
 *   P:state:<jobId>        HASH  version, size (bytes of the state text), v:<property> -> the
 *                                property's value as state text (JSON; Infinity, -Infinity, NaN bare)
 *   P:state:<jobId>:keys   LIST  the properties, in the order they were set
 * Both expire ttl ms after the last operation or read; Postgres (job_states) has every change, so
 * an operation that finds no state answers 'missing' and the repository seeds it from there.
 *
 * The rules are those of applyStateOperation (@commune/protocol, shared-state.ts), with JS's
 * operators on primitives re-implemented here: relational comparison (strings by UTF-16 code
 * unit, otherwise ToNumber), loose equality, `+=` (string concatenation or numeric addition) and
 * Number::toString for the result. An object or array as a compared value is EINVAL.
 */

const valueFunctions = `
local function decode_code_point(s, i)
  local c = string.byte(s, i)
  if c < 0x80 then return c end
  if c < 0xE0 then return (c - 0xC0) * 64 + (string.byte(s, i + 1) - 0x80) end
  if c < 0xF0 then return ((c - 0xE0) * 64 + (string.byte(s, i + 1) - 0x80)) * 64 + (string.byte(s, i + 2) - 0x80) end
  return (((c - 0xF0) * 64 + (string.byte(s, i + 1) - 0x80)) * 64 + (string.byte(s, i + 2) - 0x80)) * 64 + (string.byte(s, i + 3) - 0x80)
end
local function first_code_unit(cp)
  if cp >= 0x10000 then return 0xD800 + math.floor((cp - 0x10000) / 1024) end
  return cp
end
-- a < b for UTF-8 strings, in JS's order (UTF-16 code units)
local function utf16_less(a, b)
  if a == b then return false end
  local i, la, lb = 1, #a, #b
  while i <= la and i <= lb and string.byte(a, i) == string.byte(b, i) do i = i + 1 end
  if i > la then return true end
  if i > lb then return false end
  while i > 1 and string.byte(a, i) >= 0x80 and string.byte(a, i) < 0xC0 do i = i - 1 end
  local ca, cb = decode_code_point(a, i), decode_code_point(b, i)
  local ua, ub = first_code_unit(ca), first_code_unit(cb)
  if ua ~= ub then return ua < ub end
  return ca < cb
end
local js_spaces = { '\\194\\160', '\\239\\187\\191', '\\225\\154\\128', '\\226\\128\\168', '\\226\\128\\169', '\\226\\128\\175', '\\226\\129\\159', '\\227\\128\\128' }
for cp = 0x2000, 0x200A do table.insert(js_spaces, string.char(0xE2, 0x80, 0x80 + cp - 0x2000)) end
local function trim_js(s)
  local changed = true
  while changed do
    changed = false
    local t = string.gsub(string.gsub(s, '^[\\t\\n\\v\\f\\r ]+', ''), '[\\t\\n\\v\\f\\r ]+$', '')
    if t ~= s then s = t; changed = true end
    for _, space in ipairs(js_spaces) do
      if string.sub(s, 1, #space) == space then s = string.sub(s, #space + 1); changed = true end
      if #s >= #space and string.sub(s, -#space) == space then s = string.sub(s, 1, #s - #space); changed = true end
    end
  end
  return s
end
-- JS StringToNumber
local function string_to_number(s)
  s = trim_js(s)
  if s == '' then return 0 end
  if s == 'Infinity' or s == '+Infinity' then return math.huge end
  if s == '-Infinity' then return -math.huge end
  if string.match(s, '^0[xX]%x+$') then return tonumber(string.sub(s, 3), 16) end
  if string.match(s, '^0[oO][0-7]+$') then return tonumber(string.sub(s, 3), 8) end
  if string.match(s, '^0[bB][01]+$') then return tonumber(string.sub(s, 3), 2) end
  local mantissa = string.match(s, '^([+-]?%d*%.?%d*)$') or string.match(s, '^([+-]?%d*%.?%d*)[eE][+-]?%d+$')
  if mantissa and string.match(mantissa, '%d') then return tonumber(s) end
  return 0 / 0
end
-- a property's value text -> {k = kind, v = value}; '' is an absent property (undefined)
local function parse_value(t)
  if not t or t == '' then return { k = 'undefined' } end
  local c = string.sub(t, 1, 1)
  if c == '"' then return { k = 'string', v = cjson.decode(t) } end
  if c == '{' or c == '[' then return { k = 'object' } end
  if t == 'true' then return { k = 'boolean', v = true } end
  if t == 'false' then return { k = 'boolean', v = false } end
  if t == 'null' then return { k = 'null' } end
  if t == 'NaN' then return { k = 'number', v = 0 / 0 } end
  if t == 'Infinity' then return { k = 'number', v = math.huge } end
  if t == '-Infinity' then return { k = 'number', v = -math.huge } end
  return { k = 'number', v = tonumber(t) }
end
local function to_number(x)
  if x.k == 'number' then return x.v end
  if x.k == 'null' then return 0 end
  if x.k == 'boolean' then return x.v and 1 or 0 end
  if x.k == 'string' then return string_to_number(x.v) end
  return 0 / 0
end
-- JS x < y on primitives: true, false, or nil (undefined: a NaN was involved)
local function js_less(x, y)
  if x.k == 'string' and y.k == 'string' then return utf16_less(x.v, y.v) end
  local a, b = to_number(x), to_number(y)
  if a ~= a or b ~= b then return nil end
  return a < b
end
local function js_loose_equal(x, y)
  if x.k == y.k then
    if x.k == 'undefined' or x.k == 'null' then return true end
    return x.v == y.v
  end
  local xn, yn = x.k == 'undefined' or x.k == 'null', y.k == 'undefined' or y.k == 'null'
  if xn or yn then return xn and yn end
  if x.k == 'boolean' then return js_loose_equal({ k = 'number', v = x.v and 1 or 0 }, y) end
  if y.k == 'boolean' then return js_loose_equal(x, { k = 'number', v = y.v and 1 or 0 }) end
  return to_number(x) == to_number(y)
end
-- incoming <condition> stored
local function js_compare(condition, incoming, stored)
  if condition == 'max' or condition == '>' then return js_less(stored, incoming) == true end
  if condition == 'min' or condition == '<' then return js_less(incoming, stored) == true end
  if condition == '<=' then return js_less(stored, incoming) == false end
  if condition == '>=' then return js_less(incoming, stored) == false end
  if condition == '==' then return js_loose_equal(incoming, stored) end
  if condition == '!=' then return not js_loose_equal(incoming, stored) end
  return false
end
-- JS Number::toString (shortest round-trip digits)
local function js_number(x)
  if x ~= x then return 'NaN' end
  if x == math.huge then return 'Infinity' end
  if x == -math.huge then return '-Infinity' end
  if x == 0 then return '0' end
  local s
  for p = 1, 17 do
    s = string.format('%.' .. (p - 1) .. 'e', x)
    if tonumber(s) == x then break end
  end
  local sign, first, rest, exponent = string.match(s, '^(-?)(%d)%.?(%d*)e([-+]%d+)$')
  local digits = (string.gsub(first .. rest, '0+$', ''))
  local k, n = #digits, tonumber(exponent) + 1
  local out
  if k <= n and n <= 21 then out = digits .. string.rep('0', n - k)
  elseif 0 < n and n <= 21 then out = string.sub(digits, 1, n) .. '.' .. string.sub(digits, n + 1)
  elseif -6 < n and n <= 0 then out = '0.' .. string.rep('0', -n) .. digits
  else
    local e = n - 1
    local e_text = (e >= 0) and ('+' .. e) or tostring(e)
    if k == 1 then out = digits .. 'e' .. e_text else out = string.sub(digits, 1, 1) .. '.' .. string.sub(digits, 2) .. 'e' .. e_text end
  end
  return sign .. out
end
local function state_pairs(key, names)
  local out = {}
  for _, name in ipairs(names) do
    table.insert(out, name)
    table.insert(out, redis.call('HGET', key, 'v:' .. name) or 'null')
  end
  return out
end
-- replaces the whole state: ARGV[first..] are name, text pairs
local function write_state(key, version, size, first, count)
  redis.call('DEL', key, key .. ':keys')
  redis.call('HSET', key, 'version', version, 'size', size)
  local fields, names = {}, {}
  for i = 0, count - 1 do
    local name, text = ARGV[first + 2 * i], ARGV[first + 2 * i + 1]
    table.insert(fields, 'v:' .. name)
    table.insert(fields, text)
    table.insert(names, name)
    if #names == 500 then
      redis.call('HSET', key, unpack(fields))
      redis.call('RPUSH', key .. ':keys', unpack(names))
      fields, names = {}, {}
    end
  end
  if #names > 0 then
    redis.call('HSET', key, unpack(fields))
    redis.call('RPUSH', key .. ':keys', unpack(names))
  end
end
local function holds_task_of(P, owner, jobId)
  for _, taskId in ipairs(redis.call('SMEMBERS', P .. ':worker:' .. owner .. ':tasks')) do
    if redis.call('HGET', P .. ':task:' .. taskId, 'jobId') == jobId then return true end
  end
  return false
end
`;

/**
 * ARGV: P, jobId, maxBytes, ttlMs, leaseOwner ('' for the job's owner), kind, ...
 *   kind 'set': test ('1' testAndSet), condition ('' none), property, the new value text of the
 *               property ('' absent), size of the new state text, count, then count name/text pairs
 *   kind 'increment': property, bytes of the property name as JSON, by, String(by)
 * Returns {'missing'} (no state in Redis: seed it and retry), {'err', code, message}, or
 * {'ok', replaced, version, previousCount (-1: none), previous pairs..., pairs of the state now...}.
 */
export const stateOperationScript = `${valueFunctions}
local P, jobId, maxBytes, ttl, owner, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], ARGV[6]
local key = P .. ':state:' .. jobId
if owner ~= '' and not holds_task_of(P, owner, jobId) then
  return { 'err', 'ENOTLEASED', 'this worker holds no task of job ' .. jobId }
end
local version = redis.call('HGET', key, 'version')
if not version then return { 'missing' } end
version = tonumber(version)
local size = tonumber(redis.call('HGET', key, 'size') or '2')
local names = redis.call('LRANGE', key .. ':keys', 0, -1)
local replaced, previous = false, nil
if kind == 'set' then
  local test, condition, property, newText, newSize, count = ARGV[7] == '1', ARGV[8], ARGV[9], ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12])
  if newSize > maxBytes then
    return { 'err', 'ESTATETOOBIG', 'the state would be ' .. newSize .. ' bytes; the limit is ' .. maxBytes }
  end
  local go = true
  if condition ~= '' then
    local stored, incoming = parse_value(redis.call('HGET', key, 'v:' .. property)), parse_value(newText)
    if stored.k == 'object' or incoming.k == 'object' then
      return { 'err', 'EINVAL', 'the value of "' .. property .. '" is an object or array; conditions and increments need a number, string, boolean or null' }
    end
    go = js_compare(condition, incoming, stored)
  end
  if go then
    if test then previous = state_pairs(key, names) end
    version = version + 1
    write_state(key, version, newSize, 13, count)
    replaced = true
  end
else
  local property, nameBytes, by, byText = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10]
  local oldText = redis.call('HGET', key, 'v:' .. property)
  local stored = parse_value(oldText)
  if stored.k == 'object' then
    return { 'err', 'EINVAL', 'the value of "' .. property .. '" is an object or array; conditions and increments need a number, string, boolean or null' }
  end
  local newText
  if stored.k == 'string' then
    newText = string.sub(oldText, 1, -2) .. byText .. '"'
  else
    local base = 0 / 0
    if stored.k == 'number' then base = stored.v elseif stored.k == 'null' then base = 0 elseif stored.k == 'boolean' then base = stored.v and 1 or 0 end
    newText = js_number(base + by)
  end
  local newSize
  if oldText then newSize = size + #newText - #oldText else newSize = size + nameBytes + 1 + #newText + ((#names > 0) and 1 or 0) end
  if newSize > maxBytes then
    return { 'err', 'ESTATETOOBIG', 'the state would be ' .. newSize .. ' bytes; the limit is ' .. maxBytes }
  end
  version = version + 1
  redis.call('HSET', key, 'v:' .. property, newText, 'version', version, 'size', newSize)
  if not oldText then redis.call('RPUSH', key .. ':keys', property) end
  replaced = true
end
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', key .. ':keys', ttl)
local out = { 'ok', replaced and 1 or 0, version }
if previous then
  table.insert(out, #previous / 2)
  for _, item in ipairs(previous) do table.insert(out, item) end
else
  table.insert(out, -1)
end
for _, item in ipairs(state_pairs(key, redis.call('LRANGE', key .. ':keys', 0, -1))) do table.insert(out, item) end
return out
`;

/**
 * Seeds a job's state (from Postgres, or at deploy) unless Redis has the same or a newer version.
 * ARGV: P, jobId, version, size, ttlMs, count, then count name/text pairs. Returns 1 when written.
 */
export const seedStateScript = `${valueFunctions}
local P, jobId, version, size, ttl, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local key = P .. ':state:' .. jobId
local current = redis.call('HGET', key, 'version')
if current and tonumber(current) >= version then return 0 end
write_state(key, version, size, 7, count)
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', key .. ':keys', ttl)
return 1
`;

/** ARGV: P, jobId, ttlMs. Returns {'missing'} or {'ok', version, pairs...}, refreshing the expiry. */
export const readStateScript = `${valueFunctions}
local P, jobId, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = P .. ':state:' .. jobId
local version = redis.call('HGET', key, 'version')
if not version then return { 'missing' } end
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', key .. ':keys', ttl)
local out = { 'ok', tonumber(version) }
for _, item in ipairs(state_pairs(key, redis.call('LRANGE', key .. ':keys', 0, -1))) do table.insert(out, item) end
return out
`;

/** ARGV: P, leaseOwner, jobId. 1 when the worker connection holds a task of the job. */
export const holdsTaskScript = `${valueFunctions}
return holds_task_of(ARGV[1], ARGV[2], ARGV[3]) and 1 or 0
`;
