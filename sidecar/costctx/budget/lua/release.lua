-- Shared by check.lua and commit.lua: give back what a reservation holds.
-- A reservation is a hash  "<relative key>\n<reserved field>" -> amount.
local function release_reservation(prefix, rkey)
  local held = redis.call('HGETALL', rkey)
  if #held == 0 then
    return 0
  end
  for i = 1, #held, 2 do
    local sep = string.find(held[i], '\n', 1, true)
    local counter = prefix .. string.sub(held[i], 1, sep - 1)
    if redis.call('EXISTS', counter) == 1 then
      redis.call('HINCRBY', counter, string.sub(held[i], sep + 1), -tonumber(held[i + 1]))
    end
  end
  redis.call('DEL', rkey)
  return 1
end
