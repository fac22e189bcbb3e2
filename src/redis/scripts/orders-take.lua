-- Moves up to ARGV[2] orders from the queue into a worker's processing list without
-- blocking, and records the worker's heartbeat. Sent right behind the blocking BLMOVE of
-- the first order, in the same round trip, and alone for a non-blocking take.
-- Same effect as that many LMOVE RIGHT LEFT (the oldest queued order leaves first, and
-- the processing list keeps the oldest taken order at its right end, so ack by count
-- RPOPs it), done in bulk: one LRANGE, one LTRIM and an LPUSH per 1000 orders, about half
-- the Redis CPU of an LMOVE per order.
-- The depth counter is unchanged: a taken order is still uncommitted.
--
-- KEYS[1]  the queue (<p>:queue)
-- KEYS[2]  the worker's processing list (<p>:processing:<worker>)
-- KEYS[3]  the heartbeat sorted set (<p>:workers)
-- ARGV[1]  the worker name
-- ARGV[2]  the most orders to move (0 or more)
--
-- KEYS[4]  optional: the fence hash (<p>:fence), with
-- ARGV[3]  the fencing epoch the worker holds: when the worker was fenced since, the
--          take is refused with a FENCED error (nothing moved)
--
-- Reply: the moved orders, oldest first (an empty array when the queue was empty).
if KEYS[4] then
  local epoch = redis.call('HGET', KEYS[4], ARGV[1]) or '0'
  if tonumber(epoch) ~= tonumber(ARGV[3]) then
    return redis.error_reply('FENCED worker ' .. ARGV[1] .. ' holds epoch ' .. ARGV[3] .. ', current ' .. epoch)
  end
end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
local n = math.min(tonumber(ARGV[2]), redis.call('LLEN', KEYS[1]))
if n <= 0 then
  return {}
end
-- The n oldest are the right end of the queue: [newest of them, ..., oldest].
local items = redis.call('LRANGE', KEYS[1], -n, -1)
redis.call('LTRIM', KEYS[1], 0, -n - 1)
local moved = {}
for i = #items, 1, -1 do
  moved[#moved + 1] = items[i]
end
-- LPUSH in take order: the oldest goes in first, so it ends up rightmost.
-- Chunks of 1000 keep unpack() within Lua's stack.
for first = 1, #moved, 1000 do
  redis.call('LPUSH', KEYS[2], unpack(moved, first, math.min(first + 999, #moved)))
end
return moved
