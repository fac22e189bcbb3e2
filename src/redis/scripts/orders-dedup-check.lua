-- Which of the given order_ids are in any live dedup bucket. It only reads: marking ids
-- seen is a separate step, done after the batch is committed.
--
-- KEYS[1..n]  the live bucket sets (<p>:dedup:<bucket>; missing ones are empty)
-- ARGV[1..m]  the order_ids (distinct)
--
-- Reply: the 1-based positions in ARGV of the ids already seen, ascending.
local seen = {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    -- Chunks of 1000 keep unpack() within Lua's stack.
    for first = 1, #ARGV, 1000 do
      local last = math.min(first + 999, #ARGV)
      local flags = redis.call('SMISMEMBER', key, unpack(ARGV, first, last))
      for j = 1, #flags do
        if flags[j] == 1 then seen[first + j - 1] = true end
      end
    end
  end
end
local out = {}
for i = 1, #ARGV do
  if seen[i] then out[#out + 1] = i end
end
return out
