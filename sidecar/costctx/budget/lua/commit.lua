-- Replace a reservation by the actual amounts of its priced span (or release it: no changes).
-- KEYS[1] reservation expiry index, KEYS[2] the reservation's hash, KEYS[3] the span's
-- commit-once key, then one key per change.
-- ARGV[1] reservation id ('' for none), ARGV[2] key prefix, ARGV[3] commit-once ttl ms (0: no
-- once key), ARGV[4] '1' when the span's workflow ARGV[5] and tenant ARGV[6] must match the
-- reservation's ('0': an explicit Release by the holder of the id), then 3 per change:
-- field ('=' prefix: set only when absent), amount, key ttl ms.
-- The first value returned is 1 when the reservation was released, +2 when the span had
-- been committed before (then nothing is added and the values are read as they stand), +4
-- when the reservation was made for another workflow or tenant (left for its own span).
local released = 0
local refused = false
if ARGV[1] ~= '' then
  if ARGV[4] == '1' and not reservation_bound_to(KEYS[2], ARGV[5], ARGV[6]) then
    refused = true
  else
    released = release_reservation(ARGV[2], KEYS[2])
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
end
local duplicate = false
if tonumber(ARGV[3]) > 0 then
  duplicate = not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3])
end
local out = {released + (duplicate and 2 or 0) + (refused and 4 or 0)}
for i = 4, #KEYS do
  local base = 7 + (i - 4) * 3
  local f = ARGV[base]
  local v
  if string.sub(f, 1, 1) == '=' then
    f = string.sub(f, 2)
    if not duplicate then redis.call('HSETNX', KEYS[i], f, ARGV[base + 1]) end
    v = tonumber(redis.call('HGET', KEYS[i], f))
  elseif duplicate then
    v = tonumber(redis.call('HGET', KEYS[i], f)) or 0
  else
    v = redis.call('HINCRBY', KEYS[i], f, ARGV[base + 1])
  end
  local ttl = tonumber(ARGV[base + 2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  out[#out + 1] = v
end
return out
