-- The atomic trim guard: re-reads every group and trims only when none forbids the cut.
-- For every group now on the stream it checks that the cut removes nothing the group
-- has not received (ID before cut <= last-delivered-id) and nothing it has not
-- acknowledged (cut <= oldest pending); then trims with XTRIM MINID.
-- IDs are compared as decimal strings (Lua numbers cannot hold 64-bit sequences).
--
-- KEYS[1]  the stream
-- ARGV[1]  the cut (MINID: entries with smaller IDs go)
-- ARGV[2]  the ID just before the cut
-- ARGV[3]  '=' (exact) or '~' (whole nodes only: may keep a few more, never fewer)
-- ARGV[4..] groups that must exist: while one is missing (destroyed, or lost with a
--           Redis restart, and not yet recreated) nothing is trimmed, since entries it
--           has not received are guarded by no group.
--
-- Reply: {deleted, ''}, {-1, group} when that group forbids the cut, or {-2, group}
-- when a required group does not exist.
local function num_cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function id_cmp(a, b)
  local ams, aseq = string.match(a, '^(%d+)-?(%d*)$')
  local bms, bseq = string.match(b, '^(%d+)-?(%d*)$')
  local c = num_cmp(ams, bms)
  if c ~= 0 then return c end
  if aseq == '' then aseq = '0' end
  if bseq == '' then bseq = '0' end
  return num_cmp(aseq, bseq)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, ''} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
local present = {}
for _, g in ipairs(groups) do
  for i = 1, #g, 2 do
    if g[i] == 'name' then present[g[i + 1]] = true end
  end
end
for i = 4, #ARGV do
  if not present[ARGV[i]] then return {-2, ARGV[i]} end
end
for _, g in ipairs(groups) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if id_cmp(ARGV[2], last) > 0 then return {-1, name} end
  local oldest = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)
  if #oldest > 0 and id_cmp(ARGV[1], oldest[1][1]) > 0 then return {-1, name} end
end
return {redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3], ARGV[1]), ''}
