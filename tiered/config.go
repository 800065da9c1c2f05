package tiered

// Config: the configuration of a Keyspace, with its defaults.

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/local"
)

// Policy is the eviction policy of a keyspace's local tier.
type Policy = local.Policy

const (
	// TinyLFU is W-TinyLFU: a frequency sketch admits an entry only if it
	// is requested more often than the one it would displace. Scan and
	// loop resistant, the best hit ratio on skewed workloads. The default.
	TinyLFU = local.TinyLFU
	// LRU evicts the least recently used entry, with no admission filter.
	LRU = local.LRU
	// TwoQueue used to select golang-lru's 2Q.
	//
	// Deprecated: it now selects TinyLFU (scan resistant too, with a
	// higher hit ratio); it will be removed.
	TwoQueue = local.TinyLFU
)

// Config configures one Keyspace. Only Name is required.
type Config[V any] struct {
	// Name is the keyspace's namespace: a value with id "42" lives at Redis
	// key "<Name>:42". Must be a valid key part without ':' and unique in
	// the Client.
	Name string

	// TTL is how long a value stays fresh in Redis. Default 1h.
	TTL time.Duration

	// TTLJitter is the upper bound of a random extra TTL added to every
	// Redis write so that keys written together do not expire together.
	// Default 10% of TTL; negative disables jitter.
	TTLJitter time.Duration

	// LocalTTL is how long this process may serve a local copy without
	// asking Redis. It is the staleness bound under faults: when an
	// invalidation is lost, no local copy outlives it. Default 1 minute,
	// and never more than TTL.
	LocalTTL time.Duration

	// LocalCapacity is the number of entries the local tier holds, across
	// all its shards: a working set of LocalCapacity ids fits. Default
	// 10,000.
	LocalCapacity int

	// LocalShards is the number of local shards, each with its own write
	// lock (local hits take none). Default: see local.Options.Shards.
	LocalShards int

	// LocalPolicy is the local eviction policy. Default TinyLFU.
	LocalPolicy Policy

	// NegativeTTL is how long a Loader's ErrNotFound is remembered in Redis
	// and locally. Default 0: not remembered, every Get of an absent id
	// reaches the Loader.
	NegativeTTL time.Duration

	// Loader reads a value from the source of truth on a miss. It reports
	// absence with an error wrapping ErrNotFound. Nil: pure cache-aside, a
	// miss returns ErrNotFound.
	Loader func(ctx context.Context, id string) (V, error)

	// BatchLoader, when set, loads the misses of GetMany in one call. Ids
	// absent from the returned map are not found. Get does not use it: set
	// Loader as well for Get to read through. Default: GetMany calls Loader
	// once per missing id, concurrently.
	BatchLoader func(ctx context.Context, ids []string) (map[string]V, error)

	// Codec encodes values for Redis. Default: Raw for []byte and string,
	// JSON otherwise.
	Codec Codec[V]

	// Group maps an id to its version group (the caching guide's generation
	// keys). InvalidateGroup(group) then makes every id of the group
	// unreachable at once, in every process, in O(1). Nil: no groups.
	Group func(id string) string

	// MaxValueSize is the largest encoded value Set and fills accept, in
	// bytes; larger values are refused before any network call. Default
	// 1 MiB.
	MaxValueSize int

	// LoadTimeout bounds one Loader call. A load is shared by every caller
	// waiting for the same id, so it does not end when one caller's context
	// does. Default 10s.
	LoadTimeout time.Duration

	// DisableLeases turns off leases: every process that misses in Redis
	// calls the Loader and fills Redis. Default false (leases on).
	DisableLeases bool

	// LeaseTTL is how long a lease lives: a crashed holder blocks other
	// processes for at most this long. It should exceed the Loader's
	// worst-case latency, or slow loads lose their lease and are not cached.
	// Default 3s.
	LeaseTTL time.Duration

	// LeaseWait is how long a process that did not get the lease waits for
	// the holder's fill before it serves a stale value (if Redis still has
	// one) or calls the Loader itself (and caches nothing). Default 1s:
	// typical loads take well under that, and a caller that waits longer is
	// better served by its own load.
	LeaseWait time.Duration

	// EarlyRefreshBeta is XFetch's beta (Vattani et al., VLDB 2015): a hit
	// refreshes the value in the background, before it expires, with a
	// probability that grows as expiry nears and with how long the last
	// load took: when now - delta*beta*ln(rand) >= expiry. Larger values
	// refresh earlier. Default 1; a negative value (NoEarlyRefresh)
	// disables early refresh (the paper's beta = 0).
	EarlyRefreshBeta float64

	// StaleWhileRevalidate is a window past TTL in which a stale value is
	// still served, at once, while one background refresh (per key and
	// process, under the lease across processes) replaces it, as in HTTP's
	// stale-while-revalidate (RFC 5861). Default 0: off.
	StaleWhileRevalidate time.Duration

	// DegradedLocalTTL is how long a value loaded while Redis is failing
	// is served from the local tier. Invalidations cannot flow then, so it
	// is short; it still turns a read storm on the source into one read
	// per key per DegradedLocalTTL. Default 1s; negative disables.
	DegradedLocalTTL time.Duration

	// StaleIfError is a window past TTL in which a stale value is served
	// when the Loader fails (and Redis fails or holds only the stale
	// value), as in RFC 5861's stale-if-error. Default 0: off.
	StaleIfError time.Duration

	// SoftLoadTimeout is how long a Get waits for a load when a stale value
	// may be served (inside StaleIfError) before it returns that stale
	// value: fail-safe for a slow source, not stale-while-revalidate. The
	// one load goes on, under the lease, and its result fills both tiers.
	// Default 0: callers wait for the load.
	SoftLoadTimeout time.Duration

	// TTLFor, if set, gives each loaded or Set value its own fresh TTL in
	// Redis (jitter is still added); a result <= 0 means TTL. A Set's
	// WithTTL takes precedence. Default nil: TTL for every value.
	TTLFor func(id string, v V) time.Duration

	// VersionOf, if set, returns a value's version (an updated_at, a row
	// version): Redis keeps the highest, so a Set or fill of an older one
	// changes nothing (counted in Stats.StaleWritesRefused), compared in the
	// same script as the write, per key. It closes the race of two writers
	// that update the source in one order and the cache in the other.
	// Default nil: the last write wins.
	VersionOf func(v V) uint64

	// LocalMaxBytes bounds the local tier by the encoded size of its values
	// too, plus a fixed overhead per entry (its node and index slot: 144
	// bytes with a 72-byte value; local.Cache.Overhead); LocalCapacity still
	// bounds the entries. A value larger than the bound alone is not held
	// locally. Default 0: entries only.
	LocalMaxBytes int64

	// VerifyRate is the fraction of hits (local and Redis) checked again
	// against the source in the background, after VerifyDelay: an
	// inconsistency is counted (Stats.Inconsistent) and logged when the
	// cache still serves the value and the source disagrees (see the
	// README's "Measuring consistency in production"). The checks call the
	// Loader (counted in Stats.VerifyLoads) and cache nothing. Default 0:
	// off.
	VerifyRate float64

	// VerifyDelay is how long after a sampled hit it is checked, so that
	// writes in flight are not counted. Default 1s.
	VerifyDelay time.Duration

	// Equal tells whether two values are the same, for the verifier.
	// Default: their encodings by the Codec compared byte for byte.
	Equal func(a, b V) bool

	// CompressAbove stores encoded values of at least this many bytes
	// S2-compressed in Redis (github.com/klauspost/compress/s2): decoded
	// once per Redis read, never on a local hit. MaxValueSize applies to
	// the encoded size before compression. Default 0: never.
	CompressAbove int
}

// NoEarlyRefresh, as Config.EarlyRefreshBeta, turns early refresh off.
const NoEarlyRefresh = -1.0

const (
	defaultTTL          = time.Hour
	defaultLocalTTL     = time.Minute
	defaultCapacity     = 10_000
	defaultMaxValueSize = 1 << 20
	defaultLoadTimeout  = 10 * time.Second
	defaultLeaseTTL     = 3 * time.Second
	defaultLeaseWait    = time.Second
)

func (c *Config[V]) applyDefaults() error {
	if err := keys.ValidateName(c.Name); err != nil {
		return fmt.Errorf("tiercache: keyspace name: %w", err)
	}
	positive(&c.TTL, defaultTTL)
	defaultOrOff(&c.TTLJitter, c.TTL/10)
	positive(&c.LocalTTL, defaultLocalTTL)
	if c.LocalTTL > c.TTL {
		c.LocalTTL = c.TTL
	}
	positive(&c.LocalCapacity, defaultCapacity)
	c.NegativeTTL = max(c.NegativeTTL, 0)
	if c.Codec == nil {
		c.Codec = defaultCodec[V]()
	}
	positive(&c.MaxValueSize, defaultMaxValueSize)
	positive(&c.LoadTimeout, defaultLoadTimeout)
	positive(&c.LeaseTTL, defaultLeaseTTL)
	positive(&c.LeaseWait, defaultLeaseWait)
	defaultOrOff(&c.EarlyRefreshBeta, 1)
	c.StaleWhileRevalidate = max(c.StaleWhileRevalidate, 0)
	c.StaleIfError = max(c.StaleIfError, 0)
	c.SoftLoadTimeout = max(c.SoftLoadTimeout, 0)
	c.LocalMaxBytes = max(c.LocalMaxBytes, 0)
	c.CompressAbove = max(c.CompressAbove, 0)
	c.VerifyRate = min(max(c.VerifyRate, 0), 1)
	positive(&c.VerifyDelay, time.Second)
	defaultOrOff(&c.DegradedLocalTTL, time.Second)
	return nil
}
