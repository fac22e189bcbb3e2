-- Recomputes the depth counter from the lists themselves, atomically: the queue's length
-- plus the length of every processing list named in KEYS (those found by SCAN and those of
-- every worker in the heartbeat set; each counted once). Every key it touches is in KEYS
-- (one hash slot on a Redis Cluster: the prefix's tag): when the heartbeat set names a
-- worker whose list the caller did not pass, nothing is changed and the caller asks again.
--
-- KEYS[1]  the depth counter (<p>:depth)
-- KEYS[2]  the queue (<p>:queue)
-- KEYS[3]  the heartbeat sorted set (<p>:workers)
-- KEYS[4..] processing lists (<p>:processing:<worker>)
-- ARGV[1]  the processing key prefix (<p>:processing:)
--
-- Reply: {counter before (0 when unset), counter after}; {'missing', worker} when a worker of the
--        heartbeat set has no processing list in KEYS.
local total = redis.call('LLEN', KEYS[2])
local counted = {}
for i = 4, #KEYS do
  if not counted[KEYS[i]] then
    counted[KEYS[i]] = true
    total = total + redis.call('LLEN', KEYS[i])
  end
end
for _, worker in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if not counted[ARGV[1] .. worker] then
    return {'missing', worker}
  end
end
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('SET', KEYS[1], total)
return {before, total}
