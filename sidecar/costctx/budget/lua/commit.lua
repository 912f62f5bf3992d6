-- Replace a reservation by the actual amounts of its priced span (or release it: no changes).
-- KEYS[1] reservation expiry index, KEYS[2] the reservation's hash, then one key per change.
-- ARGV[1] reservation id ('' for none), ARGV[2] key prefix, then 3 per change:
-- field ('=' prefix: set only when absent), amount (integer), key ttl ms.
local released = 0
if ARGV[1] ~= '' then
  released = release_reservation(ARGV[2], KEYS[2])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
local out = {released}
for i = 3, #KEYS do
  local base = 3 + (i - 3) * 3
  local f = ARGV[base]
  local v
  if string.sub(f, 1, 1) == '=' then
    f = string.sub(f, 2)
    redis.call('HSETNX', KEYS[i], f, ARGV[base + 1])
    v = tonumber(redis.call('HGET', KEYS[i], f))
  else
    v = redis.call('HINCRBY', KEYS[i], f, ARGV[base + 1])
  end
  local ttl = tonumber(ARGV[base + 2])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
  out[#out + 1] = v
end
return out
