"""The server-side scripts of the Redis transport: each checks that this consumer still owns the entry and
then settles it in one atomic step, so a consumer whose entry was claimed by another (it was presumed dead)
can never emit it a second time. (XACK alone does not check ownership: a stale owner gets 1 back.)

An entry holds `d` (the item as JSON, core.base.codec) and `n` (deliveries before this entry was written, so a
graceful hand-back, which writes the entry again, does not reset the count toward the poison limit).

A script that writes (PUT, STAGE, SETTLE, DEAD) may be sent again when its reply was lost with the connection:
it ran, or it did not. Each call carries a call id (`field`, `seq`: a field of the run's `calls` hash names one
caller, a thread or a settler, whose calls go one at a time with rising seq) and records `seq:results` there in
the same atomic step; a call whose seq is already recorded does nothing again and answers what it answered then.

A generator's outputs bound for Redis may be staged before its item is settled (STAGE: a list per entry, in
`stage:<queue>:<entry id>`); SETTLE moves them to the output streams with the acknowledgement, DEAD and a claim
by another consumer delete them.
"""

from __future__ import annotations

# The start of every script that writes: answer again what an earlier run of this very call answered.
# ARGV[field_at], ARGV[field_at + 1] are the call's field and seq, KEYS[calls_at] the calls hash.
_REPEAT = """
local function repeated(calls, field, seq)
  local record = redis.call('HGET', calls, field)
  if not record then return nil end
  local done, answer = string.match(record, '^(%d+):(.*)$')
  if tonumber(done) < tonumber(seq) then return nil end
  local results = {}
  for value in string.gmatch(answer, '%d+') do table.insert(results, tonumber(value)) end
  return results
end
local function record(calls, field, seq, results)
  redis.call('HSET', calls, field, seq .. ':' .. table.concat(results, ','))
  return results
end
"""

# KEYS: stream, calls hash. ARGV: field, seq, then the items (JSON). Returns {count added}.
PUT = (
    _REPEAT
    + """
local again = repeated(KEYS[2], ARGV[1], ARGV[2])
if again then return again end
for i = 3, #ARGV do redis.call('XADD', KEYS[1], '*', 'd', ARGV[i], 'n', '0') end
return record(KEYS[2], ARGV[1], ARGV[2], {#ARGV - 2})
"""
)

# KEYS: input stream, staging list, calls hash. ARGV: group, consumer, entry id, field, seq, ttl (s), then
# outputs (JSON). Appends them to the entry's staging list if this consumer owns the entry: {1}, else {0}.
STAGE = (
    _REPEAT
    + """
local again = repeated(KEYS[3], ARGV[4], ARGV[5])
if again then return again end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p ~= 1 or p[1][2] ~= ARGV[2] then return record(KEYS[3], ARGV[4], ARGV[5], {0}) end
for i = 7, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('EXPIRE', KEYS[2], ARGV[6])
return record(KEYS[3], ARGV[4], ARGV[5], {1})
"""
)

# KEYS: input stream, calls hash, the output streams (ARGV[5] of them), then the staging list of each item
# that has one, in order. ARGV: group, consumer, field, seq, output stream count, then per item: id, staged (1
# or 0), output count, the outputs (JSON). Each output, staged ones first, goes to every output stream.
# Returns one 1 (settled) or 0 (not ours) per item. Ownership is read once for the batch (this consumer's
# pending entries: at most what it reads ahead).
SETTLE = (
    _REPEAT
    + """
local group, consumer, field, seq, outs = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local again = repeated(KEYS[2], field, seq)
if again then return again end
local mine = {}
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], group, '-', '+', 1000000, consumer)) do
  mine[entry[1]] = true
end
local results, settled, i, staging = {}, {}, 6, 3 + outs
while i <= #ARGV do
  local id, staged, count = ARGV[i], ARGV[i + 1] == '1', tonumber(ARGV[i + 2])
  local stage = nil
  if staged then stage = KEYS[staging]; staging = staging + 1 end
  if mine[id] then
    if stage then
      local length = redis.call('LLEN', stage)
      for from = 0, length - 1, 1000 do
        local part = redis.call('LRANGE', stage, from, from + 999)
        for k = 3, 2 + outs do
          for _, output in ipairs(part) do redis.call('XADD', KEYS[k], '*', 'd', output, 'n', '0') end
        end
      end
      redis.call('DEL', stage)
    end
    for k = 3, 2 + outs do
      for j = 1, count do
        redis.call('XADD', KEYS[k], '*', 'd', ARGV[i + 2 + j], 'n', '0')
      end
    end
    table.insert(settled, id)
    table.insert(results, 1)
  else
    table.insert(results, 0)
  end
  i = i + 3 + count
end
if #settled > 0 then
  redis.call('XACK', KEYS[1], group, unpack(settled))
  redis.call('XDEL', KEYS[1], unpack(settled))
end
return record(KEYS[2], field, seq, results)
"""
)

# KEYS: input stream, dead-letter stream, calls hash, then the staging list of each item that has one, in
# order. ARGV: group, consumer, field, seq, then per item: id, staged (1 or 0), the dead-letter record (JSON).
# The record goes to the run's dead-letter stream with the acknowledgement (and the staged outputs are
# dropped), or nothing happens. Returns one 1 (done) or 0 (not ours) per item.
DEAD = (
    _REPEAT
    + """
local group, consumer, field, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local again = repeated(KEYS[3], field, seq)
if again then return again end
local results, staging = {}, 4
for i = 5, #ARGV, 3 do
  local id, stage = ARGV[i], nil
  if ARGV[i + 1] == '1' then stage = KEYS[staging]; staging = staging + 1 end
  local p = redis.call('XPENDING', KEYS[1], group, id, id, 1)
  if #p == 1 and p[1][2] == consumer then
    redis.call('XADD', KEYS[2], '*', 'r', ARGV[i + 2])
    redis.call('XACK', KEYS[1], group, id)
    redis.call('XDEL', KEYS[1], id)
    if stage then redis.call('DEL', stage) end
    table.insert(results, 1)
  else
    table.insert(results, 0)
  end
end
return record(KEYS[3], field, seq, results)
"""
)

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

# KEYS: input stream. ARGV: group, consumer, min idle ms, count, staging key prefix. Claims entries idle longer
# than the visibility timeout (their owner died or stalled) and returns each as {id, fields, times delivered};
# what another owner staged for one is deleted (it is processed again from the start here).
CLAIM = """
local idle = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[3], '-', '+', ARGV[4])
local out = {}
for _, pending in ipairs(idle) do
  local id = pending[1]
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], id)
  if #claimed == 1 and claimed[1] then
    if pending[2] ~= ARGV[2] then redis.call('DEL', ARGV[5] .. id) end
    table.insert(out, {id, claimed[1][2], pending[4] + 1})
  end
end
return out
"""

# KEYS: input stream. ARGV: group, consumer, idle ms, then ids. When a graceful hand-back failed: each entry
# owned here is made to look idle for `idle ms` (the visibility timeout), so that a live consumer claims it at
# once, and this delivery is taken back from its count (it never started).
RELEASE = """
local released = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3],
               'RETRYCOUNT', math.max(p[1][4] - 1, 0), 'JUSTID')
    released = released + 1
  end
end
return released
"""

# KEYS: stream, closed flag. ARGV: the items (JSON). A source's input values, written once per run with the
# flag that says nothing more will come.
FILL_ONCE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
for i = 1, #ARGV do redis.call('XADD', KEYS[1], '*', 'd', ARGV[i], 'n', '0') end
redis.call('SET', KEYS[2], '1')
return #ARGV
"""
