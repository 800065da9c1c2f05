package remote

import "github.com/redis/go-redis/v9"

// allScripts is every script, for LoadScripts.
var allScripts = []*redis.Script{setScript, delScript, fillScript, versionScript, bumpScript, getOrLeaseScript, releaseScript}

// Every script touches only keys that share one hash slot: a value key and
// its lease key ("{<value key>}:lease", see keys.LeaseKey), or one version
// key. PUBLISH inside a script reaches every subscriber, on a single server
// and on Redis Cluster alike.

// setScript writes a value, voids any lease on it (so a slow loader's fill
// that raced this write is refused) and publishes the invalidation, all in
// one atomic step: a process dying between write and publish cannot leave
// peers stale.
//
// KEYS[1] value key, KEYS[2] lease key
// ARGV[1] envelope, ARGV[2] TTL in ms, ARGV[3] channel, ARGV[4] message ("" = none)
var setScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1
`)

// delScript deletes value and lease keys and publishes one invalidation.
//
// KEYS value and lease keys of one slot
// ARGV[1] channel, ARGV[2] message ("" = none)
var delScript = redis.NewScript(`
redis.call('DEL', unpack(KEYS))
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return 1
`)

// fillScript stores a loaded value only while the caller's lease stands. A
// Set, Delete or lease expiry in the meantime removed or replaced the lease,
// and the fill is refused: the loader may have read the database before the
// change, and its value must not be cached.
//
// KEYS[1] value key, KEYS[2] lease key
// ARGV[1] lease token, ARGV[2] envelope, ARGV[3] TTL in ms
var fillScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
`)

// versionScript reads a group's version, creating it from the server's clock
// (Unix ms) when absent. Versions therefore never go backwards even when the
// version key itself is evicted or Redis loses its data: a new version is
// always later than every version handed out before.
//
// KEYS[1] version key
var versionScript = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '')
if v then return v end
local t = redis.call('TIME')
local ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', ms))
return ms
`)

// bumpScript advances a group's version to max(current+1, server time in ms)
// and publishes the bump. The message is built by the caller without its
// trailing version, which the script appends as a uvarint (the last field of
// a single-item bump message in the invalidation format).
//
// KEYS[1] version key
// ARGV[1] channel, ARGV[2] message prefix
var bumpScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local t = redis.call('TIME')
local v = math.max(cur + 1, t[1] * 1000 + math.floor(t[2] / 1000))
redis.call('SET', KEYS[1], string.format('%.0f', v))
local n, out = v, {}
while n >= 128 do
  out[#out + 1] = string.char(n % 128 + 128)
  n = math.floor(n / 128)
end
out[#out + 1] = string.char(n)
redis.call('PUBLISH', ARGV[1], ARGV[2] .. table.concat(out))
return v
`)

// getOrLeaseScript returns the value if it is present and fresh; otherwise
// it tries to take the lease, and returns the stale value (if any) beside
// the outcome. One atomic round trip, so a process never takes a lease on a
// key that another process has just filled. Freshness is read from the
// envelope header (bytes 4-11, big-endian Unix ms; see envelope.go); bytes
// that are not an envelope are returned as present, for the caller to
// reject and overwrite.
//
// KEYS[1] value key, KEYS[2] lease key
// ARGV[1] lease token, ARGV[2] lease TTL in ms, ARGV[3] now in Unix ms
// Returns {1, value} (fresh), {2, stale-or-nothing} (lease taken) or
// {3, stale-or-nothing} (lease held by another).
var getOrLeaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then
  if string.len(v) < 11 or string.byte(v, 1) ~= 0xC4 then return {1, v} end
  -- A negative fresh-until (top bit set) lies in the past.
  if string.byte(v, 4) < 0x80 then
    local fresh = 0
    for i = 4, 11 do fresh = fresh * 256 + string.byte(v, i) end
    if fresh > tonumber(ARGV[3]) then return {1, v} end
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, v} end
return {3, v}
`)

// releaseScript deletes a lease only if the caller still holds it.
//
// KEYS[1] lease key; ARGV[1] lease token
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)
