-- Renews a partition's lease, only if it is still the caller's (same token and owner).
--
-- KEYS[1]  the lease key
-- ARGV[1]  the lease as the caller holds it ('<token>/<owner>')
-- ARGV[2]  the lease's life from now, ms
--
-- Reply: 1 renewed; 0 lost (expired, or another owner's now).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
