-- Returns one worker's processing list to the queue and forgets its heartbeat, atomically.
-- With ARGV[2] > 0 it first re-checks, by the Redis clock, that the heartbeat is still at
-- least that old (or absent): a worker that beat since the caller looked is left alone.
-- The orders go back onto the right end of the queue, the end BLMOVE takes from, oldest
-- taken nearest that end: they are processed next, in their original order. The depth
-- counter is unchanged (they were counted when pushed and are still uncommitted).
--
-- KEYS[1]  the heartbeat sorted set (<p>:workers)
-- KEYS[2]  the worker's processing list (<p>:processing:<worker>)
-- KEYS[3]  the queue (<p>:queue)
-- ARGV[1]  the worker name
-- ARGV[2]  stale after (ms); 0 recovers unconditionally (a worker releasing its own work)
-- KEYS[4]  optional: the fence hash (<p>:fence), with
-- ARGV[3]  the epoch orders-fence returned: when the worker's epoch is no longer that
--          (it released its list itself, or another recoverer fenced it again), nothing
--          is moved
--
-- Reply: {moved, 'recovered'}, {0, 'alive'} when the heartbeat is fresh, or
-- {0, 'moved-on'} when the epoch changed.
if KEYS[4] then
  local epoch = redis.call('HGET', KEYS[4], ARGV[1]) or '0'
  if tonumber(epoch) ~= tonumber(ARGV[3]) then
    return {0, 'moved-on'}
  end
end
local stale = tonumber(ARGV[2])
if stale > 0 then
  local beat = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if beat then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if now - tonumber(beat) < stale then
      return {0, 'alive'}
    end
  end
end
-- The processing list holds the newest taken order on the left: RPUSH left to right puts
-- the oldest on the queue's right end. Chunks of 1000 keep unpack() within Lua's stack.
local n = redis.call('LLEN', KEYS[2])
for first = 0, n - 1, 1000 do
  local chunk = redis.call('LRANGE', KEYS[2], first, first + 999)
  redis.call('RPUSH', KEYS[3], unpack(chunk))
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return {n, 'recovered'}
