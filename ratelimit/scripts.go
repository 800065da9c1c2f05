package ratelimit

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/keys"
)

// Each algorithm is one Lua script over one key, "<Prefix>:{<key>}:<suffix>"
// (one Cluster slot), that reads the time from Redis (TIME: the app hosts'
// clocks never matter, and Redis 5+ replicates a script's effects, not the
// script, so replicas apply exactly what the master decided), decides,
// writes and sets the key's expiry in the same atomic step.
//
// Every script takes ARGV[1] Period in ns, ARGV[2] Rate, ARGV[3] n (0 peeks:
// nothing is written), and GCRA also ARGV[4] Burst; each returns {allowed
// (0|1), remaining, retry after in µs, reset after in µs}. Times are µs
// since the epoch: Lua numbers are doubles, exact for integers to 2^53 (the
// year 2255 in µs).

const scriptPrelude = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1]) / 1000
local rate = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
`

// gcraBody keeps the theoretical arrival time (TAT) of the next request at
// the steady rate, in µs since the epoch ('%.17g' round-trips a double).
// The bucket is "ahead" of now by tat-now; a request of n fits while
// ahead + n*interval <= burst*interval. The key expires when the TAT
// passes, which is exactly when its state equals a fresh one.
const gcraBody = `
local burst = tonumber(ARGV[4])
local interval = period / rate
local ahead = 0
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
if tat and tat > now then ahead = tat - now end
local after = ahead + n * interval
local late = after - burst * interval
if late > 0 then
  return {0, math.max(math.floor(burst - ahead / interval + 1e-9), 0), math.ceil(late), math.ceil(ahead)}
end
if n > 0 then
  redis.call('SET', KEYS[1], string.format('%.17g', now + after), 'PX', math.ceil(after / 1000))
end
return {1, math.floor(burst - after / interval + 1e-9), 0, math.ceil(after)}
`

// fixedBody keeps "<window index>:<count>" for the current window, index
// floor(now/period). A value of another window counts as empty, so the
// decision never depends on when Redis expires the key (it does so at the
// window's end).
const fixedBody = `
local window = math.floor(now / period)
local reset = math.ceil((window + 1) * period - now)
local count = 0
local v = redis.call('GET', KEYS[1])
if v then
  local w, c = string.match(v, '^(%d+):(%d+)$')
  if tonumber(w) == window then count = tonumber(c) end
end
if count + n > rate then
  return {0, math.max(rate - count, 0), reset, reset}
end
if n > 0 then
  count = count + n
  redis.call('SET', KEYS[1], string.format('%d:%d', window, count), 'PX', math.ceil(reset / 1000))
end
if count == 0 then reset = 0 end
return {1, rate - count, 0, reset}
`

// slidingBody keeps a log: a list of admission times, newest first, one
// entry per admitted request. The window is (now-period, now]; the entries
// at or before its start are at the tail: up to 4 are found one LINDEX
// each (the usual case: about as many leave as arrive), more by binary
// search, and all are trimmed with one LTRIM (or DEL: LTRIM 0 -1 keeps
// everything). A request of n fits while
// count+n <= rate; if it does not, it will once the entry at index rate-n
// (newest first) has left the window. The key expires one period after its
// newest entry, when the log would be empty.
const slidingBody = `
local key = KEYS[1]
local cutoff = now - period
local count = redis.call('LLEN', key)
local live, walked, walk = count, 0, 4
while live > 0 and walked < walk and tonumber(redis.call('LINDEX', key, live - 1)) <= cutoff do
  live = live - 1
  walked = walked + 1
end
if walked == walk then
  local lo, hi = 0, live
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if tonumber(redis.call('LINDEX', key, mid)) <= cutoff then hi = mid else lo = mid + 1 end
  end
  live = lo
end
if live == 0 and count > 0 then
  redis.call('DEL', key)
elseif live < count then
  redis.call('LTRIM', key, 0, live - 1)
end
count = live
if count > rate then
  redis.call('LTRIM', key, 0, rate - 1)
  count = rate
end
if count + n > rate then
  local freeing = tonumber(redis.call('LINDEX', key, rate - n))
  local newest = tonumber(redis.call('LINDEX', key, 0))
  return {0, rate - count, math.ceil(freeing + period - now), math.ceil(newest + period - now)}
end
local reset = 0
if n > 0 then
  local stamp = string.format('%d', now)
  local batch = {}
  for i = 1, math.min(n, 512) do batch[i] = stamp end
  local left = n
  while left > 0 do
    local m = math.min(left, 512)
    redis.call('LPUSH', key, unpack(batch, 1, m))
    left = left - m
  end
  redis.call('PEXPIRE', key, math.ceil(period / 1000))
  reset = period
elseif count > 0 then
  reset = tonumber(redis.call('LINDEX', key, 0)) + period - now
end
return {1, rate - count - n, 0, math.ceil(reset)}
`

// algorithms holds, per Algorithm, its script and its key's suffix.
var algorithms = [...]struct {
	script *redis.Script
	suffix string
}{
	GCRA:          {redis.NewScript(scriptPrelude + gcraBody), "gcra"},
	FixedWindow:   {redis.NewScript(scriptPrelude + fixedBody), "fixed"},
	SlidingWindow: {redis.NewScript(scriptPrelude + slidingBody), "sliding"},
}

// redisKey is where the state of key under algorithm a lives.
func redisKey(prefix, key string, a Algorithm) string {
	return prefix + keys.Sep + "{" + key + "}" + keys.Sep + algorithms[a].suffix
}

// scriptArgs are the ARGV of the script of req's algorithm.
func scriptArgs(req request) []any {
	args := []any{int64(req.limit.Period), req.limit.Rate, req.n}
	if req.limit.Algorithm == GCRA {
		args = append(args, req.limit.Burst)
	}
	return args
}

// parseReply turns a script's reply into a Result.
func parseReply(v any) (Result, error) {
	vals, ok := v.([]any)
	if !ok || len(vals) != 4 {
		return Result{}, fmt.Errorf("ratelimit: unexpected script reply %v", v)
	}
	var ints [4]int64
	for i, x := range vals {
		if ints[i], ok = x.(int64); !ok {
			return Result{}, fmt.Errorf("ratelimit: unexpected script reply %v", v)
		}
	}
	return Result{
		Allowed:    ints[0] == 1,
		Remaining:  int(ints[1]),
		RetryAfter: time.Duration(ints[2]) * time.Microsecond,
		ResetAfter: time.Duration(ints[3]) * time.Microsecond,
	}, nil
}
