package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/local"
)

// Options configures a Client. Only Redis is required; every other zero value
// means the documented default.
type Options struct {
	// Redis is the client to use: *redis.Client, *redis.ClusterClient or a
	// failover client. Required. The caller owns it: Client.Close does not
	// close it.
	Redis redis.UniversalClient

	// Logger receives warnings (rate-limited: at most one per message per
	// second) and debug events. Default: no logging.
	Logger *zap.Logger

	// Channel is the Pub/Sub channel of the invalidation bus. Every process
	// that shares cached data must use the same channel. Default
	// "tiercache:invalidate".
	Channel string

	// BusTimeout bounds how long local entries are served after the bus last
	// proved it is connected (a message, a subscription confirmation or a
	// pong). Past it, reads go to Redis until the bus is back. The bus pings
	// Redis every BusTimeout/4 when idle. Default 1s.
	BusTimeout time.Duration

	// ReadTimeout bounds each Redis read (GET, pipelined GETs, lease
	// requests). A caller's earlier context deadline wins. On timeout a read
	// falls through to the Loader. Default 250ms.
	ReadTimeout time.Duration

	// WriteTimeout bounds each Redis write (Set, Delete, InvalidateGroup).
	// A caller's earlier context deadline wins. Default 1s.
	WriteTimeout time.Duration

	// RefreshWorkers is the number of goroutines that run background
	// refreshes (early refresh and stale-while-revalidate) for all
	// keyspaces. Default 4.
	RefreshWorkers int

	// RefreshQueue bounds the refreshes waiting for a worker. When it is
	// full, new refreshes are dropped and counted (Stats.RefreshesDropped),
	// never piled up. Default 1024.
	RefreshQueue int

	// BreakerFailures is how many Redis calls in a row must fail (network
	// errors, timeouts) before the circuit breaker opens; it also opens
	// when half of at least 20 calls in 10s fail. While open, Redis calls
	// fail at once, without waiting on the network. Default 5.
	BreakerFailures int

	// BreakerOpenFor is how long the breaker stays open before one probe
	// call may test Redis again; the probe's success closes it. Default 1s.
	BreakerOpenFor time.Duration

	// ReplayQueue bounds the invalidations (ids and groups) kept while
	// Redis is unreachable, to be replayed when it is back. Past it, the
	// affected keyspace's epoch is bumped on recovery instead: every value
	// of the keyspace becomes unreachable. Default 10,000.
	ReplayQueue int

	hooks *testHooks // set by this package's tests only
}

const (
	defaultChannel      = "tiercache:invalidate"
	defaultBusTimeout   = time.Second
	defaultReadTimeout  = 250 * time.Millisecond
	defaultWriteTimeout = time.Second
)

func (o *Options) applyDefaults() error {
	if o.Redis == nil {
		return fmt.Errorf("tiercache: Options.Redis is required")
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Channel == "" {
		o.Channel = defaultChannel
	}
	if o.BusTimeout <= 0 {
		o.BusTimeout = defaultBusTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = defaultReadTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.RefreshWorkers <= 0 {
		o.RefreshWorkers = 4
	}
	if o.RefreshQueue <= 0 {
		o.RefreshQueue = 1024
	}
	if o.BreakerFailures <= 0 {
		o.BreakerFailures = 5
	}
	if o.BreakerOpenFor <= 0 {
		o.BreakerOpenFor = time.Second
	}
	if o.ReplayQueue <= 0 {
		o.ReplayQueue = 10_000
	}
	return nil
}

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
	if c.TTL <= 0 {
		c.TTL = defaultTTL
	}
	switch {
	case c.TTLJitter == 0:
		c.TTLJitter = c.TTL / 10
	case c.TTLJitter < 0:
		c.TTLJitter = 0
	}
	if c.LocalTTL <= 0 {
		c.LocalTTL = defaultLocalTTL
	}
	if c.LocalTTL > c.TTL {
		c.LocalTTL = c.TTL
	}
	if c.LocalCapacity <= 0 {
		c.LocalCapacity = defaultCapacity
	}
	if c.NegativeTTL < 0 {
		c.NegativeTTL = 0
	}
	if c.Codec == nil {
		c.Codec = defaultCodec[V]()
	}
	if c.MaxValueSize <= 0 {
		c.MaxValueSize = defaultMaxValueSize
	}
	if c.LoadTimeout <= 0 {
		c.LoadTimeout = defaultLoadTimeout
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = defaultLeaseTTL
	}
	if c.LeaseWait <= 0 {
		c.LeaseWait = defaultLeaseWait
	}
	switch {
	case c.EarlyRefreshBeta == 0:
		c.EarlyRefreshBeta = 1
	case c.EarlyRefreshBeta < 0:
		c.EarlyRefreshBeta = 0
	}
	if c.StaleWhileRevalidate < 0 {
		c.StaleWhileRevalidate = 0
	}
	if c.StaleIfError < 0 {
		c.StaleIfError = 0
	}
	switch {
	case c.DegradedLocalTTL == 0:
		c.DegradedLocalTTL = time.Second
	case c.DegradedLocalTTL < 0:
		c.DegradedLocalTTL = 0
	}
	return nil
}
