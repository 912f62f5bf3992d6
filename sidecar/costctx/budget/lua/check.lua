-- Check and reserve, atomically (the same rules as sidecar/budget/decision.py).
-- KEYS[1] reservation expiry index (zset), KEYS[2] the new reservation's hash,
-- then ARGV[1] breaker keys, then ARGV[2] counter keys (one per dimension).
-- ARGV[3] reserve 0/1, ARGV[4] has degraded 0/1, ARGV[5] reservation ttl ms,
-- ARGV[6] reservation id, ARGV[7] key prefix; then 7 per dimension:
-- field, hard, soft, full, degraded, key ttl ms, elapsed 0/1; then the workflow and the
-- tenant the reservation is bound to.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix = ARGV[7]

-- Release reservations that expired without a priced span (bounded work per call).
local reaped = 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 64)
for _, rid in ipairs(expired) do
  reaped = reaped + release_reservation(prefix, prefix .. 'r|' .. rid)
  redis.call('ZREM', KEYS[1], rid)
end

local nb = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local tripped = false
for i = 1, nb do
  if redis.call('EXISTS', KEYS[2 + i]) == 1 then
    tripped = true
  end
end

local dims = {}
for i = 1, n do
  local base = 8 + (i - 1) * 7
  local d = {
    key = KEYS[2 + nb + i], field = ARGV[base], hard = tonumber(ARGV[base + 1]),
    soft = tonumber(ARGV[base + 2]), full = tonumber(ARGV[base + 3]),
    degraded = tonumber(ARGV[base + 4]), ttl = tonumber(ARGV[base + 5]), elapsed = ARGV[base + 6] == '1',
  }
  if d.elapsed then
    local start = redis.call('HGET', d.key, 'start')
    if not start then
      redis.call('HSET', d.key, 'start', now)
      start = now
    end
    d.committed = math.max(now - tonumber(start), 0)
    d.reserved = 0
  else
    local got = redis.call('HMGET', d.key, d.field, d.field .. '_r')
    d.committed = tonumber(got[1]) or 0
    d.reserved = tonumber(got[2]) or 0
  end
  if d.ttl > 0 and redis.call('EXISTS', d.key) == 1 then
    redis.call('PEXPIRE', d.key, d.ttl)
  end
  dims[i] = d
end

local function fits(degraded)
  for i, d in ipairs(dims) do
    if d.elapsed then
      if d.committed > d.hard then return false end
    else
      local used = d.committed + d.reserved
      local amount = degraded and d.degraded or d.full
      if used >= d.hard or used + amount > d.hard then return false end
    end
  end
  return true
end

local function soft_reached()
  for i, d in ipairs(dims) do
    local used = d.elapsed and d.committed or (d.committed + d.reserved + d.full)
    if used >= d.soft then return true end
  end
  return false
end

-- 1 allow, 2 degrade, 3 block, 4 tripped
local verdict, degraded = 3, false
if tripped then
  verdict = 4
elseif not soft_reached() then
  if fits(false) then verdict = 1 end
elseif ARGV[4] == '1' and fits(true) then
  verdict, degraded = 2, true
elseif fits(false) then
  verdict = 1
end

local reserved = 0
if ARGV[3] == '1' and (verdict == 1 or verdict == 2) then
  local rkey = KEYS[2]
  local ttl = tonumber(ARGV[5])
  for i, d in ipairs(dims) do
    local amount = degraded and d.degraded or d.full
    if (not d.elapsed) and amount > 0 then
      redis.call('HINCRBY', d.key, d.field .. '_r', amount)
      if d.ttl > 0 then redis.call('PEXPIRE', d.key, d.ttl) end
      redis.call('HINCRBY', rkey, string.sub(d.key, #prefix + 1) .. '\n' .. d.field .. '_r', amount)
    end
  end
  -- No TTL on the hash: the index entry is what the reaper acts on, and it deletes the hash
  -- (as a commit does). A hash that expired before a late reaper (no check for a while, or
  -- a backlog over 64) would leave its amounts in the counters for their whole TTL.
  -- Bounded: only a check adds a reservation, and every check reaps up to 64.
  redis.call('HSET', rkey, 'bw', ARGV[8 + n * 7], 'bt', ARGV[9 + n * 7])
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[6])
  reserved = 1
end

local out = {verdict, degraded and 1 or 0, reserved, reaped}
for i, d in ipairs(dims) do
  out[#out + 1] = d.committed
  out[#out + 1] = d.reserved
end
return out
