-- Moves up to ARGV[2] orders from the queue into a worker's processing list without
-- blocking, and records the worker's heartbeat. Sent right behind the blocking BLMOVE of
-- the first order, in the same round trip, and alone for a non-blocking take.
-- LMOVE RIGHT LEFT like that BLMOVE: the oldest queued order leaves first, and the
-- processing list keeps the oldest taken order at its right end (ack by count RPOPs it).
-- The depth counter is unchanged: a taken order is still uncommitted.
--
-- KEYS[1]  the queue (<p>:queue)
-- KEYS[2]  the worker's processing list (<p>:processing:<worker>)
-- KEYS[3]  the heartbeat sorted set (<p>:workers)
-- ARGV[1]  the worker name
-- ARGV[2]  the most orders to move (0 or more)
--
-- Reply: the moved orders, oldest first (an empty array when the queue was empty).
local t = redis.call('TIME')
redis.call('ZADD', KEYS[3], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
local moved = {}
for i = 1, tonumber(ARGV[2]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  moved[i] = item
end
return moved
