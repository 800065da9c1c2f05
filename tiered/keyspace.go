package tiered

// The keyspace: one kind of cached data, its configuration, its local tier
// and what that tier holds. A Get starts in get.go.

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/local"
)

// Keyspace is one kind of cached data with values of type V. It is safe for
// concurrent use. Create it with NewKeyspace.
type Keyspace[V any] struct {
	client     *Client
	config     Config[V]
	local      *local.Cache[entry[V]]
	hash       func(string) uint64 // xxhash64 of an id: the local tier's key
	flights    flights[V]          // coalesces concurrent misses of one id (flight.go)
	versions   versions            // current group versions (key.go)
	epoch      epoch               // the keyspace's epoch (key.go)
	refreshing sync.Map            // ids with a background refresh queued or running (refresh.go)
	recent     recentWrites        // this process's last writes (repair.go)
	verify     *verifier[V]        // nil unless VerifyRate (verify.go)
	reads      readWindow          // how recent Redis reads went (read.go)
	timeNext   atomic.Bool         // the local tier ticked: time the next hit for the Observer (observe.go)
	counters   counters            // what Stats reports (stats.go)
}

// entry is what the local tier holds: the decoded value, so a hit neither
// allocates nor decodes, and the times that decide how it may be served.
type entry[V any] struct {
	value      V
	negative   bool          // a cached "not found"
	version    uint64        // the group version the value was read under
	freshUntil clock.Time    // served as a plain hit until then
	refreshAt  clock.Time    // from then on a hit draws for an early refresh
	expiry     clock.Time    // the value's fresh-until in Redis (XFetch's expiry)
	loadTime   time.Duration // how long its load took (XFetch's delta)
	degraded   bool          // loaded while Redis was failing: served even with the bus down, briefly
}

// loaded is a value as the miss path carries it: a value or "not found".
type loaded[V any] struct {
	value    V
	negative bool
}

// NewKeyspace creates a keyspace in c. The name must be unique in c.
func NewKeyspace[V any](c *Client, cfg Config[V]) (*Keyspace[V], error) {
	if c == nil {
		return nil, errors.New("tiercache: NewKeyspace needs a Client")
	}
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	k := &Keyspace[V]{
		client: c,
		config: cfg,
		local:  local.New[entry[V]](local.Options{Capacity: cfg.LocalCapacity, MaxBytes: cfg.LocalMaxBytes, Shards: cfg.LocalShards, Policy: cfg.LocalPolicy}),
		hash:   xxhash.Sum64String,
	}
	if c.hooks != nil && c.hooks.hash != nil {
		k.hash = c.hooks.hash
	}
	if err := c.register(cfg.Name, k); err != nil {
		return nil, err
	}
	k.startVerifier()
	return k, nil
}

// Name returns the keyspace's name.
func (k *Keyspace[V]) Name() string { return k.config.Name }

func (k *Keyspace[V]) loadTimeout() time.Duration { return k.config.LoadTimeout }
