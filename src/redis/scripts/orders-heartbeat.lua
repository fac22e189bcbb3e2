-- Records an orders worker's heartbeat with the Redis clock (ms), so workers on every
-- machine are judged by one clock when `recover` looks for dead ones.
--
-- KEYS[1]  the heartbeat sorted set (<p>:workers)
-- ARGV[1]  the worker name
--
-- Reply: the heartbeat recorded, in ms since the epoch (Redis clock).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now
