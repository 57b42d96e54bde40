"""The Lua scripts that decide for the circuit breakers (jobs.breakers), atomically in
Redis: admitting a call, recording its outcome, and judging calls still running."""

# The scripts share one argument layout and this prelude.
# KEYS: state hash, window hash, probe zset, in-flight zset, recent breakers (zset).
# ARGV: 1 now, 2 bucket secs, 3 window secs, 4 failure rate, 5 min calls, 6 open secs
#       (jittered), 7 max open secs (jittered), 8 max probes, 9 lease secs, 10 slow secs,
#       11 key ttl, 12 call token, 13 outcome (record), 14 '1' if the call was a probe,
#       15 '1' if it ran past the slow threshold (record).
PRELUDE = """
local s, w, probes, inflight = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local function open_it(from)
  local trips = redis.call('HINCRBY', s, 'trips', 1)
  local secs = math.min(tonumber(ARGV[6]) * 2 ^ (trips - 1), tonumber(ARGV[7]))
  redis.call('HSET', s, 'state', 'open', 'open_until', now + secs, 'last_transition', from .. '->open',
             'last_transition_at', now, 'slow_since_answer', 0)
  redis.call('DEL', w, probes, inflight)
  return from .. '->open'
end
-- Completed calls in the window, plus calls still running past the slow threshold: a
-- host that hangs is judged after `slow` seconds, not after each fetch's full timeout.
local function should_trip()
  local oldest = math.floor(now / tonumber(ARGV[2])) - math.floor(tonumber(ARGV[3]) / tonumber(ARGV[2]))
  local calls, failures = 0, 0
  local fields = redis.call('HGETALL', w)
  for i = 1, #fields, 2 do
    local b, kind = string.match(fields[i], '(%d+):(%a)')
    if tonumber(b) <= oldest then redis.call('HDEL', w, fields[i])
    elseif kind == 'c' then calls = calls + tonumber(fields[i + 1])
    else failures = failures + tonumber(fields[i + 1]) end
  end
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now - tonumber(ARGV[9]))
  local stuck = redis.call('ZCOUNT', inflight, '-inf', now - tonumber(ARGV[10]))
  -- A host that stopped answering: min_calls calls past the slow threshold, still
  -- running or ended since the last call answered in time, and none answered since.
  -- Its successes earlier in the window must not shield it until they age out (every
  -- worker would wait on it meanwhile).
  local answered = tonumber(redis.call('HGET', s, 'last_success_at') or '0')
  local slow_ended = 0
  if tonumber(redis.call('HGET', s, 'slow_at') or '0') >= now - tonumber(ARGV[3]) then
    slow_ended = tonumber(redis.call('HGET', s, 'slow_since_answer') or '0')
  end
  if stuck + slow_ended >= tonumber(ARGV[5]) and answered < now - tonumber(ARGV[10]) then return true end
  calls, failures = calls + stuck, failures + stuck
  return calls >= tonumber(ARGV[5]) and failures / calls >= tonumber(ARGV[4])
end
"""

# Returns {decision, state, retry_at, transition}; decision is allow, probe or reject.
ADMIT = (
    PRELUDE
    + """
redis.call('ZADD', KEYS[5], now, s)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now - tonumber(ARGV[11]))
redis.call('EXPIRE', KEYS[5], ARGV[11])
local state = redis.call('HGET', s, 'state') or 'closed'
local transition = ''
redis.call('HSETNX', s, 'state', state)
redis.call('EXPIRE', s, ARGV[11])
if state == 'disabled' or state == 'forced-closed' then return {'allow', state, '0', transition} end
if state == 'closed' then
  if redis.call('ZCOUNT', inflight, '-inf', now - tonumber(ARGV[10])) > 0 and should_trip() then
    transition = open_it('closed')
    redis.call('HINCRBY', s, 'rejections', 1)
    return {'reject', 'open', redis.call('HGET', s, 'open_until'), transition}
  end
  redis.call('ZADD', inflight, now, ARGV[12])
  redis.call('EXPIRE', inflight, ARGV[11])
  return {'allow', state, '0', transition}
end
if state == 'forced-open' then
  redis.call('HINCRBY', s, 'rejections', 1)
  return {'reject', state, tostring(now + 60), transition}
end
if state == 'open' then
  local until_ = tonumber(redis.call('HGET', s, 'open_until') or '0')
  if now < until_ then
    redis.call('HINCRBY', s, 'rejections', 1)
    return {'reject', state, tostring(until_), transition}
  end
  state = 'half-open'
  redis.call('HSET', s, 'state', state, 'probe_successes', 0, 'last_transition', 'open->half-open',
             'last_transition_at', now)
  redis.call('DEL', probes)
  transition = 'open->half-open'
end
redis.call('ZREMRANGEBYSCORE', probes, '-inf', now)
if redis.call('ZCARD', probes) >= tonumber(ARGV[8]) then
  redis.call('HINCRBY', s, 'rejections', 1)
  return {'reject', state, tostring(now + 1), transition}
end
redis.call('ZADD', probes, now + tonumber(ARGV[9]), ARGV[12])
redis.call('EXPIRE', probes, ARGV[11])
return {'probe', state, '0', transition}
"""
)

# Returns the transition this call caused, or ''. The state hash is made to exist before
# its expiry is set, as ADMIT does: a reset() while the call ran deleted it, the outcome
# writes it anew, and an EXPIRE of no key would leave that one to live forever.
RECORD = (
    PRELUDE
    + """
local outcome = ARGV[13]
local state = redis.call('HGET', s, 'state') or 'closed'
redis.call('HSETNX', s, 'state', state)
redis.call('EXPIRE', s, ARGV[11])
if ARGV[14] == '1' then
  if redis.call('ZREM', probes, ARGV[12]) == 0 or state ~= 'half-open' then return '' end
  if outcome == 'failure' then return open_it('half-open') end
  if outcome == 'success' then
    if redis.call('HINCRBY', s, 'probe_successes', 1) >= tonumber(ARGV[8]) then
      redis.call('HSET', s, 'state', 'closed', 'trips', 0, 'last_transition', 'half-open->closed',
                 'last_transition_at', now, 'last_success_at', now, 'slow_since_answer', 0)
      redis.call('DEL', w, inflight)
      return 'half-open->closed'
    end
  end
  return ''
end
redis.call('ZREM', inflight, ARGV[12])
if state ~= 'closed' or outcome == 'ignored' then return '' end
local bucket = math.floor(now / tonumber(ARGV[2]))
redis.call('HINCRBY', w, bucket .. ':c', 1)
if outcome == 'failure' then redis.call('HINCRBY', w, bucket .. ':f', 1) end
if outcome == 'success' then
  redis.call('HSET', s, 'last_success_at', now, 'slow_since_answer', 0)
elseif outcome == 'failure' and ARGV[15] == '1' then
  -- In a row, and within a window of each other: slow links posted an hour apart say
  -- nothing of a host that answers everyone else in time.
  if tonumber(redis.call('HGET', s, 'slow_at') or '0') < now - tonumber(ARGV[3]) then
    redis.call('HSET', s, 'slow_since_answer', 0)
  end
  redis.call('HINCRBY', s, 'slow_since_answer', 1)
  redis.call('HSET', s, 'slow_at', now)
end
redis.call('EXPIRE', w, ARGV[3])
if should_trip() then return open_it('closed') end
return ''
"""
)

# Asked by a call still running: trips a closed breaker if the calls running past the
# slow threshold (this one among them) already make the rule hold, as the next admission
# would; when every worker is stuck on the host, there is no next admission to do it.
# Returns {state, transition}.
CHECK = (
    PRELUDE
    + """
local state = redis.call('HGET', s, 'state') or 'closed'
if state == 'closed' and redis.call('ZCOUNT', inflight, '-inf', now - tonumber(ARGV[10])) > 0
   and should_trip() then
  return {'open', open_it('closed')}
end
return {state, ''}
"""
)
