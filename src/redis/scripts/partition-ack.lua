-- Acknowledges entries of one partition, only while the caller still holds its lease: a
-- fenced-out owner acknowledges nothing (the new owner has taken its pending entries).
--
-- KEYS[1]  the partition's stream
-- KEYS[2]  its lease key
-- ARGV[1]  the lease as the caller holds it ('<token>/<owner>')
-- ARGV[2]  the consumer group
-- ARGV[3..] entry IDs
--
-- Reply: XACK's count; -1 when fenced.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
return redis.call('XACK', KEYS[1], ARGV[2], unpack(ARGV, 3))
