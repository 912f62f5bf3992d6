-- Shared by check.lua and commit.lua: give back what a reservation holds.
-- A reservation is a hash  "<relative key>\n<reserved field>" -> amount, plus the fields
-- `bw` / `bt` (the workflow and tenant it was made for), which hold no newline.
-- Split at the LAST newline: a reserved field never holds one, so whatever a key holds the
-- amount goes back to the counter it was taken from.
local function release_reservation(prefix, rkey)
  local held = redis.call('HGETALL', rkey)
  if #held == 0 then
    return 0
  end
  for i = 1, #held, 2 do
    local key, fld = string.match(held[i], '^(.*)\n([^\n]+)$')
    if key then
      local counter = prefix .. key
      if redis.call('EXISTS', counter) == 1 then
        redis.call('HINCRBY', counter, fld, -tonumber(held[i + 1]))
      end
    end
  end
  redis.call('DEL', rkey)
  return 1
end

-- May a span of workflow `wf`, tenant `tenant` replace the reservation in `rkey`? Each of the
-- two the check named must match; one the check left empty binds nothing.
local function reservation_bound_to(rkey, wf, tenant)
  local bound = redis.call('HMGET', rkey, 'bw', 'bt')
  if bound[1] and bound[1] ~= '' and bound[1] ~= wf then return false end
  if bound[2] and bound[2] ~= '' and bound[2] ~= tenant then return false end
  return true
end
