package remote

import (
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// allScripts is every script, for LoadScripts.
var allScripts = []*redis.Script{setScript, delScript, fillScript, versionScript.flagged, bumpScript.flagged, getOrLeaseScript, releaseScript}

// flaggedScript is a script with Redis 7 flags (a "#!lua flags=..." first
// line) and the same script without them, for servers that do not know
// script flags (Redis 6, miniredis): there the flags' guarantee is lost
// (allow-oom: a bump under maxmemory with noeviction fails and is retried
// instead), the rest holds.
type flaggedScript struct {
	flagged, legacy *redis.Script
}

func newFlaggedScript(flags, body string) flaggedScript {
	return flaggedScript{flagged: redis.NewScript("#!lua flags=" + flags + "\n" + body), legacy: redis.NewScript(body)}
}

// isFlagsRefused reports whether err is a server refusing a script's
// "#!lua" first line.
func isFlagsRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Error compiling script") && strings.Contains(err.Error(), "#")
}

// Every script touches only keys that share one hash slot: a value key and
// its lease key ("{<value key>}:lease", see keys.LeaseKey), or one version
// key. PUBLISH inside a script reaches every subscriber, on a single server
// and on Redis Cluster alike.

// setScript writes a value, voids any lease on it (so a slow loader's fill
// that raced this write is refused) and publishes the invalidation, all in
// one atomic step: a process dying between write and publish cannot leave
// peers stale. With a version (Config.VersionOf), a value whose version is
// older than the one Redis holds changes nothing. When Redis refuses the
// value (maxmemory with noeviction), the old value is deleted instead (DEL
// works when memory is full), so it is not served while the write is
// reported failed.
//
// KEYS[1] value key, KEYS[2] lease key
// ARGV[1] envelope, ARGV[2] TTL in ms, ARGV[3] channel, ARGV[4] message ("" = none),
// ARGV[5] the value's version as 8 big-endian bytes ("" = none)
// Returns 1 (stored), 0 (older than Redis's: nothing changed) or the
// refusal's text (the key deleted instead).
var setScript = redis.NewScript(olderLua + `
if older(KEYS[1], ARGV[5]) then return 0 end
local r = redis.pcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local refused = type(r) == 'table' and r.err
if refused then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
if refused then return r.err end
return 1
`)

// envelopeLua defines isEnvelope(v): whether v can be an envelope of this
// format (long enough, this magic and format version; see envelope.go).
// Lua strings count from 1, so byte 0 of the layout is string.byte(v, 1).
var envelopeLua = fmt.Sprintf(`
local function isEnvelope(v)
  return string.len(v) >= %d and string.byte(v, 1) == %d and string.byte(v, 2) == %d
end
`, EnvelopeOverhead, envMagic, envVersion)

// olderLua defines older(key, version): whether the envelope at key holds
// a newer version than version (8 big-endian bytes, so string order is
// numeric order; "" compares nothing). The version is at bytes 16..23 (in
// Lua's counting) of the envelope.
var olderLua = envelopeLua + `
local function older(key, version)
  if version == '' then return false end
  local cur = redis.call('GET', key)
  if not cur or not isEnvelope(cur) then return false end
  return string.sub(cur, 16, 23) > version
end
`

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
// change, and its value must not be cached. A fill older than the version
// Redis holds, or that Redis refuses (maxmemory with noeviction), gives the
// lease back.
//
// KEYS[1] value key, KEYS[2] lease key
// ARGV[1] lease token, ARGV[2] envelope, ARGV[3] TTL in ms,
// ARGV[4] the value's version as 8 big-endian bytes ("" = none)
// Returns 1 (stored), 0 (the lease was voided), -1 (Redis refused it) or
// -2 (older than Redis's).
var fillScript = redis.NewScript(olderLua + `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if older(KEYS[1], ARGV[4]) then redis.call('DEL', KEYS[2]) return -2 end
local r = redis.pcall('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
if type(r) == 'table' and r.err then return -1 end
return 1
`)

// Versions and epochs. A version (of a group) or an epoch (of a keyspace)
// is part of the keys of the values it covers, so it must never be handed
// out twice: a repeated one would make the values written under its first
// use reachable again. Each new one is therefore the largest of the current
// one plus one, the server's clock in microseconds, and one more than the
// largest the caller has ever seen (its floor), which covers a key lost and
// a server clock that went back. Every new one is published, so that every
// process moves to it at once, whether it was bumped or re-created after its
// key was lost (evicted, flushed). The scripts run with allow-oom: under
// maxmemory with noeviction, a bump must still land (a few bytes), or old
// values would be served while it is retried.
//
// The publish appends the version to the caller's message prefix as a
// uvarint: the last field of a single-item bump message in the invalidation
// format (see package invalidation). Lua numbers hold integers exactly up to
// 2^53; microseconds since 1970 stay below that until the year 2255.
const uvarintLua = `
local function publish(channel, prefix, v)
  local n, out = v, {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  redis.call('PUBLISH', channel, prefix .. table.concat(out))
end
local function newVersion(cur, floor)
  local t = redis.call('TIME')
  return math.max(cur + 1, t[1] * 1000000 + t[2], floor + 1)
end
`

// versionScript returns the version at KEYS[1], creating (and publishing)
// a new one when it is absent or unreadable. With an incarnation token, it
// also treats as absent a version last written under another incarnation of
// the server's data (KEYS[2] holds the token it was written under): a
// restart from an older snapshot or a failover that lost writes must not
// bring back the values of that time.
//
// KEYS[1] version or epoch key, KEYS[2] its incarnation key (epochs only)
// ARGV[1] incarnation token ("": none), ARGV[2] floor, ARGV[3] channel,
// ARGV[4] message prefix
// Returns {version, 1} for a new version (published), {version, 0} else.
var versionScript = newFlaggedScript("allow-oom", uvarintLua+`
local cur = tonumber(redis.call('GET', KEYS[1]) or '')
if cur and (ARGV[1] == '' or redis.call('GET', KEYS[2]) == ARGV[1]) then return {cur, 0} end
local v = newVersion(cur or 0, tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.0f', v))
if ARGV[1] ~= '' then redis.call('SET', KEYS[2], ARGV[1]) end
publish(ARGV[3], ARGV[4], v)
return {v, 1}
`)

// bumpScript advances the version at KEYS[1] and publishes it. An epoch's
// bump records the incarnation it was made under too, or the next read that
// checks it would renew it once more.
//
// KEYS[1] version or epoch key, KEYS[2] its incarnation key (epochs only)
// ARGV[1] floor, ARGV[2] channel, ARGV[3] message prefix, ARGV[4]
// incarnation token ("": none)
var bumpScript = newFlaggedScript("allow-oom", uvarintLua+`
local v = newVersion(tonumber(redis.call('GET', KEYS[1]) or '') or 0, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%.0f', v))
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4]) end
publish(ARGV[2], ARGV[3], v)
return v
`)

// getOrLeaseScript returns the value if it is present and fresh; otherwise
// it tries to take the lease, and returns the stale value (if any) beside
// the outcome. One atomic round trip, so a process never takes a lease on a
// key that another process has just filled. Freshness is read from the
// envelope header (bytes 4-11, big-endian Unix ms of the server's clock;
// see envelope.go), compared with the server's own clock; bytes that are not
// an envelope of this format are returned as present, for the caller to
// reject and overwrite.
//
// KEYS[1] value key, KEYS[2] lease key
// ARGV[1] lease token, ARGV[2] lease TTL in ms
// Returns {1, value} (fresh), {2, stale-or-nothing} (lease taken) or
// {3, stale-or-nothing} (lease held by another).
var getOrLeaseScript = redis.NewScript(envelopeLua + `
local v = redis.call('GET', KEYS[1])
if v then
  if not isEnvelope(v) then return {1, v} end
  -- A negative fresh-until (top bit set) lies in the past.
  if string.byte(v, 4) < 0x80 then
    local fresh = 0
    for i = 4, 11 do fresh = fresh * 256 + string.byte(v, i) end
    local t = redis.call('TIME')
    if fresh > t[1] * 1000 + math.floor(t[2] / 1000) then return {1, v} end
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
