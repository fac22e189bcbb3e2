-- Claims pending entries of one partition (any consumer's: a previous owner's) to the
-- caller's consumer, only while the caller holds the partition's lease. How a new owner
-- takes over the old owner's pending entries before it reads anything new.
--
-- KEYS[1]  the partition's stream
-- KEYS[2]  its lease key
-- ARGV[1]  the lease as the caller holds it ('<token>/<owner>')
-- ARGV[2]  the consumer group
-- ARGV[3]  the caller's consumer
-- ARGV[4..] entry IDs
--
-- Reply: XCLAIM's reply (the entries still in the stream, each delivery counted); the
-- error FENCED when the lease is not the caller's.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease of ' .. KEYS[1] .. ' is not held by ' .. ARGV[1])
end
local r = redis.pcall('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, unpack(ARGV, 4))
return r
