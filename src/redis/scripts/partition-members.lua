-- The processes reading a partitioned stream: records the caller's heartbeat (by the
-- Redis clock, so the processes' own clocks do not matter), or removes it when it leaves,
-- drops members silent for longer than a lease, and returns those left.
--
-- KEYS[1]  the members sorted set ({<stream>}:members:<group>): id -> last beat, ms
-- ARGV[1]  the caller's process id
-- ARGV[2]  a member silent this long (ms) is gone
-- ARGV[3]  '1' when the caller leaves
--
-- Reply: the live members' ids, sorted.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
-- Forgotten with the last member: a set no process beats into expires.
redis.call('PEXPIRE', KEYS[1], ttl * 10)
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(members)
return members
