-- Makes a fully written lookup-cache version current, unless a newer one already is, and
-- retires the versions it replaces (the previous one and any abandoned by a publisher that
-- died half-way, up to 100 back) by shortening their TTL, never lengthening it.
-- Every key it touches is in KEYS (one hash slot on a Redis Cluster: the prefix's tag):
-- the caller reads the current version first and names the keys of every version the
-- swap may retire; when the current version changed meanwhile, nothing is done and the
-- caller asks again.
--
-- KEYS[1]  the current-version key (<p>:cache:version)
-- KEYS[2]  the new version's meta hash (<p>:cache:<v>:meta), written last by the publisher
-- KEYS[3..6]  the new version's products, currencies, zips and meta keys
-- KEYS[7..]   4 keys (products, currencies, zips, meta) of each version from ARGV[4] to
--             the new version - 1, in order
-- ARGV[1]  the new version
-- ARGV[2]  TTL (ms) left to retired versions
-- ARGV[3]  the current version the caller read (0 if none)
-- ARGV[4]  the first version KEYS[7..] names
--
-- Reply: {1, previous version (0 if none)} when swapped (or already current);
--        {0, current version} when a newer version is current (ours is retired);
--        {-1, 0} when the meta hash is missing (the version is incomplete: not swapped);
--        {-3, current version} when the current version is not ARGV[3].
local retire_ms = tonumber(ARGV[2])
local function retire(first)
  for i = first, first + 3 do
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl == -1 or ttl > retire_ms then
      redis.call('PEXPIRE', KEYS[i], retire_ms)
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, 0}
end
local new = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[3]) then
  return {-3, current}
end
if current == new then
  return {1, current}
end
if current > new then
  retire(3)
  return {0, current}
end
redis.call('SET', KEYS[1], new)
for i = 7, #KEYS, 4 do
  retire(i)
end
return {1, current}
