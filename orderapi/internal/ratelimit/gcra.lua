-- One GCRA step (generic cell rate algorithm) for one key, atomically.
-- KEYS[1] the key holding the theoretical arrival time (TAT), Unix µs
-- ARGV[1] emission interval in µs (Per / N), ARGV[2] burst (events at once)
-- Returns {1, 0} when allowed, {0, µs until the next one is allowed} when not.
-- The clock is Redis's own (TIME), so replicas with skewed clocks share
-- one limit.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then
  tat = now
end
local newtat = tat + interval
local allowAt = newtat - burst * interval
if now < allowAt then
  return {0, allowAt - now}
end
-- The key lives only while it matters: once now passes the TAT a fresh key
-- means the same. %.0f keeps all digits (tostring would round to 14).
local ttl = math.ceil((newtat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', newtat), 'PX', string.format('%.0f', ttl))
return {1, 0}
