-- Publish one merchant event atomically (ARCHITECTURE.md "How an order travels" 3).
-- KEYS[1] history (sorted set scored by seq), KEYS[2] state (hash)
-- ARGV[1] seq, ARGV[2] frame, ARGV[3] orderSum, ARGV[4] history size,
-- ARGV[5] history ttl in ms, ARGV[6] channel, ARGV[7] "1" for SPUBLISH
local seq = tonumber(ARGV[1])
-- Already published (a relay retry, or two publishers racing): do nothing,
-- so no socket sees a seq twice from Redis.
if redis.call('ZCOUNT', KEYS[1], seq, seq) > 0 then
  return 0
end
redis.call('ZADD', KEYS[1], seq, ARGV[2])
local size = tonumber(ARGV[4])
local n = redis.call('ZCARD', KEYS[1])
if n > size then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - size - 1)
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
-- The state only moves forward: a late older event must not lower it.
local cur = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if seq > cur then
  redis.call('HSET', KEYS[2], 'seq', ARGV[1], 'orderSum', ARGV[3])
end
-- The state lives as long as the history: nothing written on behalf of a
-- merchant id stays forever, and a lost state is read back from the order
-- API (PROTOCOL.md "Limits and hostile clients").
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if ARGV[7] == '1' then
  redis.call('SPUBLISH', ARGV[6], ARGV[2])
else
  redis.call('PUBLISH', ARGV[6], ARGV[2])
end
return 1
