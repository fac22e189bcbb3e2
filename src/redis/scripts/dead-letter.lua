-- Moves one entry to the dead-letter stream, atomically with its acknowledgement,
-- so a dead letter is written exactly once even when a crash makes us repeat it.
-- Order: still pending? -> XADD -> XACK. If the XADD fails (wrong key type, say), the
-- script stops before the XACK: the entry stays pending and is retried, never lost.
--
-- KEYS[1]  the source stream
-- KEYS[2]  the dead-letter stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry ID in the source stream
-- ARGV[3..] field, value, field, value ... for the dead-letter entry
--
-- Reply: the new dead-letter entry ID, or false when the entry was no longer
-- pending (already acknowledged: someone dead-lettered or wrote it before us).
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return false
end
local fields = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local id = redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return id
