"""The Lua scripts that move pending work between its Redis keys (jobs.pending), each in
one atomic step: a drain's take and release, unlisting a group, whether reclaim may send a
group's drain again, requeueing set-aside items."""

# Shared by take and release: a group is listed in `groups` under the earliest lease end
# of its claims, for `reclaim`, and unlisted once it holds none.
_RELIST = """
local function relist(claims, groups, group)
  local earliest = redis.call('ZRANGE', claims, 0, 0, 'WITHSCORES')
  if #earliest == 0 then
    redis.call('ZREM', groups, group)
  else
    redis.call('ZADD', groups, earliest[2], group)
  end
end
"""

# KEYS: items, claims, groups with claims, lapses (item -> leases it outlived), set aside,
# groups with items waiting. ARGV: now, lease end, batch, group, max age, lapses before an
# item is set aside, set aside ttl. Returns {taken, set aside, 1 if more wait}.
# Claims whose lease lapsed first (their drain died): batch / 2^(most lapses among them)
# of them and nothing else, so an item that kills its drain ends up alone. Else new
# items. All leased to this drain; the group is listed under its earliest lease end,
# for `reclaim`.
TAKE = (
    _RELIST
    + """
local batch = tonumber(ARGV[3])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, batch)
local taken, set_aside, more = {}, {}, 0
if #lapsed > 0 then
  local worst = 0
  for _, item in ipairs(lapsed) do
    worst = math.max(worst, tonumber(redis.call('HGET', KEYS[4], item) or '0'))
  end
  local limit = math.max(1, math.floor(batch / 2 ^ worst))
  for i = 1, math.min(limit, #lapsed) do
    local item = lapsed[i]
    if redis.call('HINCRBY', KEYS[4], item, 1) > tonumber(ARGV[6]) then
      redis.call('ZREM', KEYS[2], item)
      redis.call('HDEL', KEYS[4], item)
      redis.call('SADD', KEYS[5], item)
      redis.call('EXPIRE', KEYS[5], ARGV[7])
      table.insert(set_aside, item)
    else
      table.insert(taken, item)
    end
  end
  redis.call('EXPIRE', KEYS[4], ARGV[5])
  if #lapsed > limit or #lapsed == batch or redis.call('SCARD', KEYS[1]) > 0 then more = 1 end
else
  taken = redis.call('SPOP', KEYS[1], batch)
  if #taken == batch then more = 1 end
end
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[6], ARGV[4]) end
for _, item in ipairs(taken) do redis.call('ZADD', KEYS[2], ARGV[2], item) end
if #taken > 0 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
relist(KEYS[2], KEYS[3], ARGV[4])
return {taken, set_aside, more}
"""
)

# KEYS: claims, groups with claims, lapses. ARGV: group, this drain's lease end, then its
# items. Only items still under this drain's lease: one a later drain took again
# (re-marked by an edit, or past this lease) is that drain's to let go.
RELEASE = (
    _RELIST
    + """
local lease = tonumber(ARGV[2])
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == lease then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
  end
end
relist(KEYS[1], KEYS[2], ARGV[1])
return 0
"""
)

# KEYS: items, groups with items waiting. ARGV: group. Unlists the group unless its items
# wait (a write may add some between a look and the removal). Returns 1 if they do.
UNLIST_EMPTY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
redis.call('SREM', KEYS[2], ARGV[1])
return 0
"""

# KEYS: a group's drain flag, what reclaim sent (hash: at, times). ARGV: now, flag ttl,
# longest wait. 1, the flag taken (as a write takes it), if no drain is due and reclaim
# has sent none since one started, or the last longer ago than flag ttl * 2^times (at
# most the longest wait); else 0.
RESEND_DUE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local sent = redis.call('HMGET', KEYS[2], 'at', 'times')
if sent[1] and sent[2] then
  local wait = math.min(tonumber(ARGV[2]) * 2 ^ tonumber(sent[2]), tonumber(ARGV[3]))
  if tonumber(ARGV[1]) < tonumber(sent[1]) + wait then return 0 end
end
redis.call('SET', KEYS[1], 1, 'EX', ARGV[2])
return 1
"""

# KEYS: items, set aside, lapses, groups with items waiting. ARGV: the items' ttl, group.
# Set-aside items pending again, as never lapsed. Returns how many.
REQUEUE = """
local items = redis.call('SMEMBERS', KEYS[2])
for _, item in ipairs(items) do
  redis.call('SADD', KEYS[1], item)
  redis.call('HDEL', KEYS[3], item)
end
if #items > 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  redis.call('SADD', KEYS[4], ARGV[2])
end
redis.call('DEL', KEYS[2])
return #items
"""
