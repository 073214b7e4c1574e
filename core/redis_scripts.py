"""The server-side scripts of the Redis transport: each checks that this consumer still owns the entry and
then settles it in one atomic step, so a consumer whose entry was claimed by another (it was presumed dead)
can never emit it a second time. (XACK alone does not check ownership: a stale owner gets 1 back.)

An entry holds `d` (the item as JSON, core.codec) and `n` (deliveries before this entry was written, so a
graceful hand-back, which writes the entry again, does not reset the count toward the poison limit).
"""
from __future__ import annotations

# KEYS: input stream, then the output streams. ARGV: group, consumer, then per item: id, output count,
# the outputs (JSON). Each output goes to every output stream. Returns one 1 (settled) or 0 (not ours) per item.
# Ownership is read once for the batch (this consumer's pending entries: at most what it reads ahead).
SETTLE = """
local group, consumer = ARGV[1], ARGV[2]
local mine = {}
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], group, '-', '+', 1000000, consumer)) do
  mine[entry[1]] = true
end
local results, settled, i = {}, {}, 3
while i <= #ARGV do
  local id, count = ARGV[i], tonumber(ARGV[i + 1])
  if mine[id] then
    for k = 2, #KEYS do
      for j = 1, count do
        redis.call('XADD', KEYS[k], '*', 'd', ARGV[i + 1 + j], 'n', '0')
      end
    end
    table.insert(settled, id)
    table.insert(results, 1)
  else
    table.insert(results, 0)
  end
  i = i + 2 + count
end
if #settled > 0 then
  redis.call('XACK', KEYS[1], group, unpack(settled))
  redis.call('XDEL', KEYS[1], unpack(settled))
end
return results
"""

# KEYS: input stream, dead-letter stream. ARGV: group, consumer, then per item: id, the dead-letter record
# (JSON). The record goes to the run's dead-letter stream with the acknowledgement, or neither happens.
DEAD = """
local group, consumer = ARGV[1], ARGV[2]
local results = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  if #p == 1 and p[1][2] == consumer then
    redis.call('XADD', KEYS[2], '*', 'r', ARGV[i + 1])
    redis.call('XACK', KEYS[1], group, id)
    redis.call('XDEL', KEYS[1], id)
    table.insert(results, 1)
  else
    table.insert(results, 0)
  end
end
return results
"""

# KEYS: input stream. ARGV: group, consumer, then ids. A graceful hand-back: each entry owned here is
# written again at the end of the stream (its delivery count kept, this delivery not counted) and acknowledged.
HAND_BACK = """
local group, consumer = ARGV[1], ARGV[2]
local given = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  if #p == 1 and p[1][2] == consumer then
    local entry = redis.call('XRANGE', KEYS[1], id, id)
    if #entry == 1 then
      local fields, data, prior = entry[1][2], nil, 0
      for f = 1, #fields, 2 do
        if fields[f] == 'd' then data = fields[f + 1] elseif fields[f] == 'n' then prior = tonumber(fields[f + 1]) end
      end
      redis.call('XADD', KEYS[1], '*', 'd', data, 'n', tostring(prior + p[1][4] - 1))
    end
    redis.call('XACK', KEYS[1], group, id)
    redis.call('XDEL', KEYS[1], id)
    given = given + 1
  end
end
return given
"""

# KEYS: input stream. ARGV: group, consumer, then ids. The live owner renews its lease on long items
# (resets their idle time); an entry claimed by another meanwhile is left alone.
RENEW = """
local group, consumer = ARGV[1], ARGV[2]
local renewed = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == consumer then
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, ARGV[i], 'JUSTID')
    table.insert(renewed, ARGV[i])
  end
end
return renewed
"""

# KEYS: input stream. ARGV: group, consumer, min idle ms, count. Claims entries idle longer than the
# visibility timeout (their owner died or stalled) and returns each as {id, fields, times delivered}.
CLAIM = """
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
for _, entry in ipairs(claimed[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1)
  table.insert(out, {entry[1], entry[2], #p == 1 and p[1][4] or 1})
end
return out
"""

# KEYS: stream, closed flag. ARGV: the items (JSON). A source's input values, written once per run with the
# flag that says nothing more will come.
FILL_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'd', ARGV[i], 'n', '0') end
redis.call('SET', KEYS[2], '1')
return #ARGV
"""
