-- Recomputes the depth counter from the lists themselves, atomically: the queue's length
-- plus the length of every processing list (those named in KEYS, found by SCAN, and those
-- of every worker in the heartbeat set, built from ARGV[1]; each counted once).
--
-- KEYS[1]  the depth counter (<p>:depth)
-- KEYS[2]  the queue (<p>:queue)
-- KEYS[3]  the heartbeat sorted set (<p>:workers)
-- KEYS[4..] processing lists found by SCAN (<p>:processing:<worker>)
-- ARGV[1]  the processing key prefix (<p>:processing:)
--
-- Reply: {counter before (0 when unset), counter after}
local total = redis.call('LLEN', KEYS[2])
local counted = {}
local function add(key)
  if not counted[key] then
    counted[key] = true
    total = total + redis.call('LLEN', key)
  end
end
for i = 4, #KEYS do
  add(KEYS[i])
end
for _, worker in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  add(ARGV[1] .. worker)
end
local before = tonumber(redis.call('GET', KEYS[1]) or '0')
redis.call('SET', KEYS[1], total)
return {before, total}
