-- Gives a partition's lease up, only if it is still the caller's: a lease another owner
-- took meanwhile is left alone.
--
-- KEYS[1]  the lease key
-- ARGV[1]  the lease as the caller holds it ('<token>/<owner>')
--
-- Reply: 1 released; 0 it was not the caller's any more.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
