package tiered

// Options: the configuration of a Client, with its defaults.

import (
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
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

	// ServerCheck is how often the Client asks Redis for its clock (every
	// freshness decision uses the server's clock) and for the incarnation
	// of its data (run and replication ids of the masters): after a restart
	// or failover the data may be older than what was acknowledged, and
	// every keyspace's epoch is renewed. A subscription of the bus checks
	// too. Default 1s.
	ServerCheck time.Duration

	// Observer, if set, receives a sample of local hits and every miss, for
	// metrics and traces (see the tieredprom and tieredotel modules).
	// Default: none, and the hit path pays one nil check.
	Observer Observer

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
	positive(&o.BusTimeout, defaultBusTimeout)
	positive(&o.ReadTimeout, defaultReadTimeout)
	positive(&o.WriteTimeout, defaultWriteTimeout)
	positive(&o.RefreshWorkers, 4)
	positive(&o.RefreshQueue, 1024)
	positive(&o.BreakerFailures, 5)
	positive(&o.BreakerOpenFor, time.Second)
	positive(&o.ReplayQueue, 10_000)
	positive(&o.ServerCheck, time.Second)
	return nil
}

// positive sets *v to def unless *v is positive: the one rule behind most
// defaults of Options and Config.
func positive[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// defaultOrOff sets *v to def when it is zero, and to zero (off) when it is
// negative.
func defaultOrOff[T int64 | time.Duration | float64](v *T, def T) {
	switch {
	case *v == 0:
		*v = def
	case *v < 0:
		*v = 0
	}
}
