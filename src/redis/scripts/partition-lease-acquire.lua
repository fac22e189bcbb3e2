-- Takes the lease of one partition when nobody holds it (free, or expired), with a new
-- fencing token: the partition's counter, raised by one at every lease ever taken, so
-- each owner's token is larger than every earlier owner's. A lease still held by the
-- caller's own id is a previous run of the same process id (the caller does not hold
-- it): it is taken over, with a new token, rather than waited out.
--
-- KEYS[1]  the lease key ({<stream>:p<i>}:lease:<group>)
-- KEYS[2]  the fencing counter ({<stream>:p<i>}:fence:<group>)
-- ARGV[1]  the caller's process id (owner)
-- ARGV[2]  the lease's life, ms
--
-- Reply: {1, token} when taken; {0, '<token>/<owner>'} of the holder otherwise.
local held = redis.call('GET', KEYS[1])
if held then
  local slash = string.find(held, '/', 1, true)
  if not slash or string.sub(held, slash + 1) ~= ARGV[1] then
    return {0, held}
  end
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '/' .. ARGV[1], 'PX', ARGV[2])
return {1, token}
