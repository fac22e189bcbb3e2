-- Reads one batch's lookups from the current cache version, atomically: the version and
-- every HMGET come from one moment, so a batch never mixes versions and never sees one
-- being written (a version becomes current only once complete).
-- Every key it touches is in KEYS (one hash slot on a Redis Cluster: the prefix's tag).
-- The caller names the version it expects; when another one is current, the script reads
-- nothing and says which, and the caller asks again with that version's keys.
--
-- KEYS[1]  the current-version key (<p>:cache:version)
-- KEYS[2]  the expected version's meta hash (<p>:cache:<v>:meta)
-- KEYS[3]  its products hash, KEYS[4] its currencies hash, KEYS[5] its zips hash
-- ARGV[1]  the expected version
-- ARGV[2]  P, the number of product ids
-- ARGV[3]  C, the number of currency codes
-- ARGV[4..] P product ids, then C currency codes, then the zip codes
--
-- Reply: {version, products, currencies, zips}, each an array of JSON texts (nil for a
--        key the version does not have), in the order asked;
--        {-1} when no version was ever published; {-2, version} when the current
--        version's keys have expired (its meta hash is gone); {-3, version} when the
--        current version is not the expected one.
local version = redis.call('GET', KEYS[1])
if not version then
  return {-1}
end
if version ~= ARGV[1] then
  return {-3, tonumber(version)}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
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
  fetch(KEYS[3], 4, 3 + p),
  fetch(KEYS[4], 4 + p, 3 + p + c),
  fetch(KEYS[5], 4 + p + c, #ARGV),
}
