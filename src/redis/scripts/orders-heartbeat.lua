-- Records an orders worker's heartbeat with the Redis clock (ms), so workers on every
-- machine are judged by one clock when `recover` looks for dead ones.
--
-- KEYS[1]  the heartbeat sorted set (<p>:workers)
-- ARGV[1]  the worker name
--
-- KEYS[2]  optional: the fence hash (<p>:fence), with
-- ARGV[2]  the fencing epoch the worker holds: when the worker was fenced since (its
--          epoch raised), the beat is refused with a FENCED error (nothing recorded)
--
-- Reply: the heartbeat recorded, in ms since the epoch (Redis clock).
if KEYS[2] then
  local epoch = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
  if tonumber(epoch) ~= tonumber(ARGV[2]) then
    return redis.error_reply('FENCED worker ' .. ARGV[1] .. ' holds epoch ' .. ARGV[2] .. ', current ' .. epoch)
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now
