-- Fences a worker: raises its fencing epoch, so its takes and acks carrying the epoch it
-- holds are refused from now on (see orders-take, orders-ack). The first step of
-- returning its processing list to the queue; the caller raises the fence in Postgres
-- next (its promotes are refused there) and only then moves the list (orders-recover with
-- the epoch this returns). With ARGV[2] > 0 it first re-checks, by the Redis clock, that
-- the worker's heartbeat is still at least that old (or absent): a worker that beat
-- since the caller looked is left alone.
--
-- KEYS[1]  the heartbeat sorted set (<p>:workers)
-- KEYS[2]  the fence hash (<p>:fence)
-- ARGV[1]  the worker name
-- ARGV[2]  stale after (ms); 0 fences unconditionally
-- ARGV[3]  optional: a floor; the new epoch is raised above it (a fence Postgres still
--          holds from before Redis lost this hash: a restart without persistence, a
--          clear of the prefix)
--
-- Reply: {epoch after, 'fenced'}, or {0, 'alive'} when the heartbeat is fresh.
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
local epoch = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local floor = tonumber(ARGV[3] or '0')
if epoch <= floor then
  epoch = floor + 1
  redis.call('HSET', KEYS[2], ARGV[1], epoch)
end
return {epoch, 'fenced'}
