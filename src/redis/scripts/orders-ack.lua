-- Acknowledges committed orders: removes them from the worker's processing list and
-- decrements the depth counter by the number actually removed, atomically. Orders no
-- longer there (recovered to the queue meanwhile, or acknowledged twice) are not counted,
-- so the counter stays equal to queued + in-processing orders. It never goes below 0.
--
-- KEYS[1]  the worker's processing list (<p>:processing:<worker>)
-- KEYS[2]  the depth counter (<p>:depth)
-- KEYS[3]  optional: the fence hash (<p>:fence); then ARGV[2] is the fencing epoch the
--          batch was taken under and ARGV[3] the worker name, and the rest follows
-- ARGV[1]  'count' or 'items'
-- ARGV[..] mode 'count': how many of the oldest taken orders to remove (RPOP)
-- ARGV[..] mode 'items': the orders; each removes one equal element, searching from
--          the oldest end (LREM -1), so acknowledging in take order costs O(1) each
--
-- Reply: {removed, depth counter after}, or {0, depth, 'fenced', current epoch} when the
-- worker was fenced since it took the batch (its list went back to the queue, maybe
-- with newer orders in it since): nothing is removed.
local first = 2
if KEYS[3] then
  local epoch = redis.call('HGET', KEYS[3], ARGV[3]) or '0'
  if tonumber(epoch) ~= tonumber(ARGV[2]) then
    return {0, tonumber(redis.call('GET', KEYS[2]) or '0'), 'fenced', tonumber(epoch)}
  end
  first = 4
end
local removed = 0
if ARGV[1] == 'count' then
  local n = tonumber(ARGV[first])
  if n > 0 then
    local popped = redis.call('RPOP', KEYS[1], n)
    if popped then removed = #popped end
  end
else
  for i = first, #ARGV do
    removed = removed + redis.call('LREM', KEYS[1], -1, ARGV[i])
  end
end
local depth
if removed > 0 then
  depth = redis.call('DECRBY', KEYS[2], removed)
  if depth < 0 then
    redis.call('SET', KEYS[2], 0)
    depth = 0
  end
else
  depth = tonumber(redis.call('GET', KEYS[2]) or '0')
end
return {removed, depth}
