-- dead-letter.lua for a partition, only while the caller holds the partition's lease:
-- moves one entry to the partition's dead-letter stream atomically with its
-- acknowledgement, if it is still pending.
--
-- KEYS[1]  the partition's stream
-- KEYS[2]  its dead-letter stream ({<stream>:p<i>}:dead)
-- KEYS[3]  its lease key
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry ID
-- ARGV[3]  the lease as the caller holds it ('<token>/<owner>')
-- ARGV[4..] field, value, field, value ... for the dead-letter entry
--
-- Reply: the new dead-letter entry ID; false when the entry was no longer pending; -1
-- when fenced.
if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return -1
end
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return false
end
local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return id
