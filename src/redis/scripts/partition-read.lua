-- Reads new entries of one partition for its owner, only while the caller still holds the
-- partition's lease: a fenced-out owner (its lease expired, or taken by another process)
-- reads nothing. Never blocks (a script cannot): when nothing is new it returns the
-- stream's last entry ID, after which the caller may wait with a plain XREAD BLOCK (which
-- delivers nothing) and then call this again.
--
-- KEYS[1]  the partition's stream (<stream>:p<i>)
-- KEYS[2]  its lease key ({<stream>:p<i>}:lease:<group>)
-- ARGV[1]  the lease as the caller holds it ('<token>/<owner>')
-- ARGV[2]  the consumer group
-- ARGV[3]  the consumer
-- ARGV[4]  COUNT
--
-- Reply: {XREADGROUP reply, false} when entries came; {false, last entry ID or false};
-- the error FENCED when the lease is not the caller's; XREADGROUP's own error (NOGROUP).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease of ' .. KEYS[1] .. ' is not held by ' .. ARGV[1])
end
local r = redis.pcall('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], '>')
if type(r) == 'table' and r.err then
  return r
end
if r then
  return {r, false}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if last[1] then
  return {false, last[1][1]}
end
return {false, false}
