package tiered

// Get, GetOrLoad and Peek: the hit path (one index lookup in the local
// tier, no decode, no allocation) and, on a local miss, the coalescing of
// concurrent misses of one id in this process. What a miss does next is in
// miss.go.

import (
	"context"
	"time"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/keys"
)

// Get returns the value of id: from the local tier, else Redis, else the
// Loader (whose result is cached in both tiers). It returns ErrNotFound when
// the value is in no tier and the Loader (if any) reports it absent, and
// ErrInvalidKey for an id that cannot be a key. A Redis failure is never
// returned when a Loader is configured: the Loader answers instead.
//
// The value returned is shared with the local tier and every other caller:
// treat it as read-only (copy it before changing a slice, map or pointer
// in it).
func (k *Keyspace[V]) Get(ctx context.Context, id string) (V, error) {
	return k.get(ctx, id, k.configLoader())
}

// GetOrLoad is Get with load as this call's loader, used instead of
// Config.Loader on a miss, with the same guarantees: concurrent misses of the
// id coalesce, one process loads under the lease, early refresh and the
// stale windows apply (a background refresh started by this call loads with
// load too). A nil load means Config.Loader.
func (k *Keyspace[V]) GetOrLoad(ctx context.Context, id string, load func(ctx context.Context) (V, error)) (V, error) {
	if load == nil {
		return k.get(ctx, id, k.configLoader())
	}
	return k.get(ctx, id, loader[V]{call: load})
}

func (k *Keyspace[V]) get(ctx context.Context, id string, ld loader[V]) (V, error) {
	var zero V
	if err := keys.Validate(id); err != nil {
		return zero, err
	}
	start := k.timeHit()
	h := k.hash(id)
	now := k.client.clock.Now()
	e, state := k.lookup(h, id, now)
	if state == hitFresh {
		v, ok := k.hit(id, h, e, ld)
		k.observeHit(start)
		if !ok {
			return zero, ErrNotFound
		}
		return v, nil
	}
	l, err := k.getMissed(ctx, miss[V]{id: id, hash: h, stale: k.staleFallback(e, state, now)}, ld)
	if err != nil {
		return zero, err
	}
	if l.negative {
		return zero, ErrNotFound
	}
	return l.value, nil
}

// Peek returns id's value from the local tier alone: no I/O, no load, no
// refresh. ok is true only for a value Get would serve as fresh now. It
// counts as a local hit or miss in Stats, and nothing else.
func (k *Keyspace[V]) Peek(id string) (v V, ok bool) {
	if keys.Validate(id) != nil {
		return v, false
	}
	e, state := k.lookup(k.hash(id), id, k.client.clock.Now())
	if state != hitFresh || e.negative {
		return v, false
	}
	return e.value, true
}

type lookupState uint8

const (
	lookupMiss lookupState = iota
	hitFresh               // serve it
	hitStale               // past fresh: usable only if the Loader fails
)

// lookup is the hit path: one clock load, one local tier lookup, no
// allocation, no copy of the entry (it is immutable once stored).
func (k *Keyspace[V]) lookup(h uint64, id string, now clock.Time) (*entry[V], lookupState) {
	// While the bus is not known to be healthy, entries may have missed
	// invalidations: only those loaded from the source during the outage
	// are served (briefly), the rest are stale-if-error fallbacks at most.
	busOK := now < k.client.serveUntil()
	e, tick := k.local.RefTick(h, id, int64(now))
	if e == nil {
		return nil, lookupMiss
	}
	if tick && k.client.options.Observer != nil {
		k.timeNext.Store(true) // the next hit is measured
	}
	if !k.versionCurrent(id, e, now) {
		k.counters.localNotServed.Add(1)
		return e, lookupMiss
	}
	if now >= e.freshUntil || (!busOK && !e.degraded) {
		k.counters.localNotServed.Add(1)
		return e, hitStale
	}
	return e, hitFresh
}

// versionCurrent reports whether e was read under id's current group
// version (always, without groups).
func (k *Keyspace[V]) versionCurrent(id string, e *entry[V], now clock.Time) bool {
	if k.config.Group == nil {
		return true
	}
	ver, known := k.versions.get(k.config.Group(id), now)
	return known && ver == e.version
}

// hit serves a fresh local entry, drawing for an early refresh (loading with
// ld) near its expiry. A negative entry is "not found": ok is false.
func (k *Keyspace[V]) hit(id string, h uint64, e *entry[V], ld loader[V]) (v V, ok bool) {
	if now := k.client.clock.Now(); now >= e.refreshAt && xfetch(now, e.expiry, e.loadTime, k.config.EarlyRefreshBeta, k.draw()) {
		k.refresh(refreshJob[V]{id: id, hash: h, early: true, loader: ld})
	}
	if k.verify != nil {
		k.sampleForVerify(id, loaded[V]{value: e.value, negative: e.negative}, ld)
	}
	if e.negative {
		k.counters.negativeHits.Add(1)
		return v, false
	}
	return e.value, true
}

// staleFallback returns the stale value a miss may serve if loading fails
// (StaleIfError), or nil.
func (k *Keyspace[V]) staleFallback(e *entry[V], state lookupState, now clock.Time) *loaded[V] {
	if e == nil || state != hitStale || now >= k.staleEnd(e) {
		return nil
	}
	return &loaded[V]{value: e.value, negative: e.negative}
}

// getMissed coalesces concurrent misses of one id in this process: the
// first caller leads a batch of one through the miss path, the others wait
// for its result, each no longer than its own context (and, when a stale
// value may be served, than SoftLoadTimeout).
func (k *Keyspace[V]) getMissed(ctx context.Context, m miss[V], ld loader[V]) (l loaded[V], err error) {
	if k.client.closed.Load() {
		return loaded[V]{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return loaded[V]{}, &OpError{Op: "get", Key: keys.Key(k.config.Name, m.id), Err: err}
	}
	ctx, end := k.startMiss(ctx)
	var o outcome
	if end != nil {
		defer func() {
			if err == nil && l.negative {
				err = ErrNotFound
			}
			end(MissEnd{Tier: o.tier, Lease: o.lease, Load: o.load, IDs: 1, Err: err})
		}()
	}
	f, leader := k.flights.join(m.id)
	if leader {
		s := newSingle(m, ld)
		s.batch.flight = f
		k.run(ctx, &s.batch)
	}
	var soft <-chan time.Time
	if k.config.SoftLoadTimeout > 0 {
		t := time.NewTimer(k.config.SoftLoadTimeout)
		defer t.Stop()
		soft = t.C
	}
	for {
		select {
		case <-f.done:
			o = f.outcome
			return f.result, f.err
		case <-ctx.Done():
			return loaded[V]{}, &OpError{Op: "get", Key: keys.Key(k.config.Name, m.id), Err: ctx.Err()}
		case <-soft:
			soft = nil
			stale := m.stale
			if stale == nil {
				stale = f.stale.Load()
			}
			if stale != nil {
				// The load goes on for the cache; this caller has waited
				// long enough.
				k.counters.softTimeouts.Add(1)
				o = outcome{tier: TierStale}
				return *stale, nil
			}
		}
	}
}
