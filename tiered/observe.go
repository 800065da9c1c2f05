package tiered

// Observation: what metrics and tracing adapters (tieredprom, tieredotel)
// plug into. The core depends on nothing for it: an Observer interface, a
// sampled measure of local hits (about one in 64: the local tier ticks every
// 64th hit of a read stripe, which it counts anyway, and the keyspace times
// its next hit; the hit path pays one atomic load and, rarely, a clock read)
// and a measure of every miss.

import (
	"context"
	"sort"
	"time"

	"github.com/tiercache/tiercache/local"
)

// Observer receives what a Client's keyspaces do, for metrics and traces.
// Its methods are called on the caller's goroutine, concurrently; they must
// be fast and must not block.
type Observer interface {
	// LocalHit is called for one local hit in LocalHitSampling, with its
	// latency.
	LocalHit(keyspace string, latency time.Duration)
	// StartMiss is called when a Get or GetMany goes past the local tier.
	// It returns the context the rest of the call runs under (a tracer
	// puts its span there) and a function that is called exactly once,
	// when the call returns, with what happened.
	StartMiss(ctx context.Context, keyspace string) (context.Context, func(MissEnd))
}

// LocalHitSampling is about how many local hits there are for each one an
// Observer sees: a hit's latency is measured only when it is reported.
const LocalHitSampling = local.TickEvery

// Tier is what answered a read.
type Tier uint8

// The tiers, from the nearest.
const (
	TierLocal  Tier = iota + 1 // the local tier
	TierRedis                  // Redis (a fill of the local tier followed)
	TierLoader                 // the Loader
	TierStale                  // a stale value (StaleWhileRevalidate, StaleIfError, a lease wait)
)

// String returns "local", "redis", "loader" or "stale".
func (t Tier) String() string {
	switch t {
	case TierLocal:
		return "local"
	case TierRedis:
		return "redis"
	case TierLoader:
		return "loader"
	case TierStale:
		return "stale"
	}
	return "none"
}

// LeaseOutcome is what a miss met at the lease.
type LeaseOutcome uint8

// The lease outcomes.
const (
	LeaseNone    LeaseOutcome = iota // no lease was asked for
	LeaseWon                         // this process took the lease and loaded
	LeaseWaited                      // another process held it; its fill answered
	LeaseTimeout                     // another process held it past LeaseWait
)

// String returns "none", "won", "waited" or "timeout".
func (l LeaseOutcome) String() string {
	switch l {
	case LeaseWon:
		return "won"
	case LeaseWaited:
		return "waited"
	case LeaseTimeout:
		return "timeout"
	}
	return "none"
}

// MissEnd is what one Get or GetMany past the local tier did.
type MissEnd struct {
	Tier    Tier          // the farthest tier that answered (for GetMany, over its ids)
	Lease   LeaseOutcome  // the lease outcome (for GetMany, the last of won, waited, timeout met)
	Load    time.Duration // how long the Loader ran for this call (0: it did not)
	Latency time.Duration // from the local miss to the answer
	IDs     int           // ids past the local tier: 1 for Get
	Err     error         // the call's error (ErrNotFound included)
}

// outcome is what the miss path records of one miss for MissEnd.
type outcome struct {
	tier  Tier
	lease LeaseOutcome
	load  time.Duration
}

// merge folds o2 into o: the farther tier, the later lease outcome, the
// longer load.
func (o *outcome) merge(o2 outcome) {
	o.tier, o.lease, o.load = max(o.tier, o2.tier), max(o.lease, o2.lease), max(o.load, o2.load)
}

// timeHit decides, on the hit path, whether this hit is measured: it
// returns the start time, or the zero Time when not (no observer, or no
// tick since the last measured hit).
func (k *Keyspace[V]) timeHit() time.Time {
	if k.client.options.Observer == nil || !k.timeNext.Load() || !k.timeNext.CompareAndSwap(true, false) {
		return time.Time{}
	}
	return time.Now()
}

// observeHit reports a sampled hit.
func (k *Keyspace[V]) observeHit(start time.Time) {
	if !start.IsZero() {
		k.client.options.Observer.LocalHit(k.config.Name, time.Since(start))
	}
}

// startMiss begins the observation of a miss: the context to go on with and
// the function to end it with (a no-op without an observer).
func (k *Keyspace[V]) startMiss(ctx context.Context) (context.Context, func(MissEnd)) {
	if k.client.options.Observer == nil {
		return ctx, nil
	}
	start := time.Now()
	ctx, end := k.client.options.Observer.StartMiss(ctx, k.config.Name)
	return ctx, func(e MissEnd) {
		e.Latency = time.Since(start)
		end(e)
	}
}

// KeyspaceStats returns the Stats of every keyspace of c, by name: a
// metrics collector's view of all of them, those created later included.
func (c *Client) KeyspaceStats() map[string]Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]Stats, len(c.spaces))
	for name, s := range c.spaces {
		out[name] = s.stats()
	}
	return out
}

// Keyspaces returns the names of c's keyspaces, sorted.
func (c *Client) Keyspaces() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.spaces))
	for name := range c.spaces {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
