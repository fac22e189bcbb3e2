-- Moves one entry to the dead-letter stream, atomically with its acknowledgement,
-- so a dead letter is written exactly once even when a crash makes us repeat it.
--
-- KEYS[1]  the source stream
-- KEYS[2]  the dead-letter stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry ID in the source stream
-- ARGV[3..] field, value, field, value ... for the dead-letter entry
--
-- Reply: the new dead-letter entry ID, or false when the entry was no longer
-- pending (already acknowledged: someone dead-lettered or wrote it before us).
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if acked == 0 then
  return false
end
local fields = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
return redis.call('XADD', KEYS[2], '*', unpack(fields))
