-- Deletes one consumer of a group, only if it holds no pending entries and has
-- been idle at least the given time, checked and done atomically: a consumer that
-- receives an entry between a caller's look and this delete is kept, so
-- XGROUP DELCONSUMER never drops pending entries.
--
-- KEYS[1]  the stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the consumer name
-- ARGV[3]  minimum idle time in ms (XINFO CONSUMERS `idle`)
--
-- Reply: {1, 'deleted', 0} when deleted;
--        {0, 'pending', <pending count>} when it holds pending entries (kept);
--        {0, 'active', <idle ms>} when it was idle for less than ARGV[3] (kept);
--        {0, 'missing', 0} when no such consumer exists (nothing to do).
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, consumer in ipairs(consumers) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if info['name'] == ARGV[2] then
    local pending = tonumber(info['pending'])
    if pending > 0 then
      return {0, 'pending', pending}
    end
    local idle = tonumber(info['idle'])
    if idle < tonumber(ARGV[3]) then
      return {0, 'active', idle}
    end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return {1, 'deleted', 0}
  end
end
return {0, 'missing', 0}
