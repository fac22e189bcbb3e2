-- Reads one batch's lookups from the current cache version, atomically: the version and
-- every HMGET come from one moment, so a batch never mixes versions and never sees one
-- being written (a version becomes current only once complete).
-- The per-version keys are built here from ARGV[1]: on a Redis Cluster the prefix needs a
-- hash tag so that they share KEYS[1]'s slot.
--
-- KEYS[1]  the current-version key (<p>:cache:version)
-- ARGV[1]  the per-version key prefix (<p>:cache:); keys are <prefix><v>:<table>
-- ARGV[2]  P, the number of product ids
-- ARGV[3]  C, the number of currency codes
-- ARGV[4..] P product ids, then C currency codes, then the zip codes
--
-- Reply: {version, products, currencies, zips}, each an array of JSON texts (nil for a
--        key the version does not have), in the order asked;
--        {-1} when no version was ever published; {-2, version} when the current
--        version's keys have expired (its meta hash is gone).
local version = redis.call('GET', KEYS[1])
if not version then
  return {-1}
end
local base = ARGV[1] .. version .. ':'
if redis.call('EXISTS', base .. 'meta') == 0 then
  return {-2, tonumber(version)}
end
local p = tonumber(ARGV[2])
local c = tonumber(ARGV[3])
local function fetch(key, first, last)
  local out = {}
  -- Chunks of 1000 keep unpack() within Lua's stack.
  for from = first, last, 1000 do
    local to = math.min(from + 999, last)
    local values = redis.call('HMGET', key, unpack(ARGV, from, to))
    for i = 1, #values do
      out[#out + 1] = values[i]
    end
  end
  return out
end
return {
  tonumber(version),
  fetch(base .. 'products', 4, 3 + p),
  fetch(base .. 'currencies', 4 + p, 3 + p + c),
  fetch(base .. 'zips', 4 + p + c, #ARGV),
}
