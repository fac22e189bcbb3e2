-- Makes a fully written lookup-cache version current, unless a newer one already is, and
-- retires the versions it replaces (the previous one and any abandoned by a publisher that
-- died half-way, up to 100 back) by shortening their TTL, never lengthening it.
-- The per-version keys are built here from ARGV[3]: on a Redis Cluster the prefix needs a
-- hash tag so that they share KEYS[1]'s slot.
--
-- KEYS[1]  the current-version key (<p>:cache:version)
-- KEYS[2]  the new version's meta hash (<p>:cache:<v>:meta), written last by the publisher
-- ARGV[1]  the new version
-- ARGV[2]  TTL (ms) left to retired versions
-- ARGV[3]  the per-version key prefix (<p>:cache:); keys are <prefix><v>:<table>
--
-- Reply: {1, previous version (0 if none)} when swapped (or already current);
--        {0, current version} when a newer version is current (ours is retired);
--        {-1, 0} when the meta hash is missing (the version is incomplete: not swapped).
local tables = {'products', 'currencies', 'zips', 'meta'}
local retire_ms = tonumber(ARGV[2])
local function retire(v)
  for _, t in ipairs(tables) do
    local key = ARGV[3] .. v .. ':' .. t
    local ttl = redis.call('PTTL', key)
    if ttl == -1 or ttl > retire_ms then
      redis.call('PEXPIRE', key, retire_ms)
    end
  end
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, 0}
end
local new = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current == new then
  return {1, current}
end
if current > new then
  retire(new)
  return {0, current}
end
redis.call('SET', KEYS[1], new)
for v = math.max(1, current, new - 100), new - 1 do
  retire(v)
end
return {1, current}
