package tiered

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Keyspace is one kind of cached data with values of type V. It is safe for
// concurrent use. Create it with NewKeyspace.
type Keyspace[V any] struct {
	c          *Client
	cfg        Config[V]
	local      *local.Cache[entry[V]]
	hash       func(string) uint64
	fl         flights[V]
	vers       versions
	refreshing sync.Map // ids with a background refresh queued or running
	ep         epoch
	st         counters
}

// entry is what the local tier holds: the decoded value, so a hit neither
// allocates nor decodes, and the times that decide how it may be served.
// Times are readings of the Client's coarse clock.
type entry[V any] struct {
	val       V
	neg       bool   // a cached "not found"
	ver       uint64 // the group version the value was read under
	fresh     int64  // served as a plain hit until then
	refreshAt int64  // from then on a hit draws for an early refresh
	expiry    int64  // the value's fresh-until in Redis (XFetch's expiry)
	delta     int64  // how long its load took, ns (XFetch's delta)
	degraded  bool   // loaded while Redis was failing: served even with the bus down, briefly
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
		c:     c,
		cfg:   cfg,
		local: local.New[entry[V]](local.Options{Capacity: cfg.LocalCapacity, Shards: cfg.LocalShards, Policy: cfg.LocalPolicy}),
		hash:  xxhash.Sum64String,
	}
	if c.hooks != nil && c.hooks.hash != nil {
		k.hash = c.hooks.hash
	}
	if err := c.register(cfg.Name, k); err != nil {
		return nil, err
	}
	return k, nil
}

// Name returns the keyspace's name.
func (k *Keyspace[V]) Name() string { return k.cfg.Name }

// Get returns the value of id: from the local tier, else Redis, else the
// Loader (whose result is cached in both tiers). It returns ErrNotFound when
// the value is in no tier and the Loader (if any) reports it absent, and
// ErrInvalidKey for an id that cannot be a key. A Redis failure is never
// returned when a Loader is configured: the Loader answers instead.
func (k *Keyspace[V]) Get(ctx context.Context, id string) (V, error) {
	if err := keys.Validate(id); err != nil {
		var zero V
		return zero, err
	}
	h := k.hash(id)
	now := k.c.clk.Now()
	e, st := k.lookup(h, id, now)
	if st != hitFresh {
		return k.miss(ctx, id, h, k.fallback(e, st, now))
	}
	if now >= e.refreshAt {
		k.maybeRefreshEarly(id, h, e, now)
	}
	if e.neg {
		k.st.negativeHits.Add(1)
		var zero V
		return zero, ErrNotFound
	}
	return e.val, nil
}

type lookupState uint8

const (
	lookupMiss lookupState = iota
	hitFresh               // serve it
	hitStale               // past fresh: usable only if the Loader fails
)

// lookup is the hit path: one clock load, one shard lock, no allocation,
// no copy of the entry (it is immutable once stored).
func (k *Keyspace[V]) lookup(h uint64, id string, now int64) (*entry[V], lookupState) {
	// While the bus is not known to be healthy, entries may have missed
	// invalidations: only those loaded from the source during the outage
	// are served (briefly), the rest are stale-if-error fallbacks at most.
	busOK := now < k.c.serveUntil.Load()
	e := k.local.Ref(h, id, now)
	if e == nil {
		return nil, lookupMiss
	}
	if k.cfg.Group != nil {
		if ver, known := k.vers.get(k.cfg.Group(id), now); !known || ver != e.ver {
			k.st.localNotServed.Add(1)
			return e, lookupMiss
		}
	}
	if now >= e.fresh || (!busOK && !e.degraded) {
		// Kept only as a stale-if-error fallback.
		k.st.localNotServed.Add(1)
		return e, hitStale
	}
	return e, hitFresh
}

// fallback returns the stale value a miss may serve if loading fails.
func (k *Keyspace[V]) fallback(e *entry[V], st lookupState, now int64) *loaded[V] {
	if e == nil {
		return nil
	}
	if st != hitStale || now >= k.staleEnd(e) {
		return nil
	}
	return &loaded[V]{val: e.val, neg: e.neg}
}

type loaded[V any] struct {
	val V
	neg bool
}

// miss coalesces concurrent misses of one id in this process. The leader
// reads Redis on its own goroutine; a load, if needed, runs on a goroutine
// and a context of its own (bounded by LoadTimeout), so a caller giving up
// does not fail the others and no caller waits past its context.
func (k *Keyspace[V]) miss(ctx context.Context, id string, h uint64, stale *loaded[V]) (V, error) {
	var zero V
	if k.c.closed.Load() {
		return zero, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return zero, &OpError{Op: "get", Key: keys.Key(k.cfg.Name, id), Err: err}
	}
	f, leader := k.fl.join(id)
	if leader {
		r := k.readRedis(ctx, id, h)
		if r.err == nil && (r.state == redisFresh || r.state == redisRevalidate) {
			k.st.redisHits.Add(1)
			k.fl.land(id, f, r.l, nil)
		} else {
			started := k.c.spawn(func() {
				lctx, cancel := k.c.loadCtx(ctx, k.cfg.LoadTimeout)
				defer cancel()
				l, err := k.fetch(lctx, id, h, stale, &r)
				k.fl.land(id, f, l, err)
			})
			if !started {
				k.fl.land(id, f, loaded[V]{}, ErrClosed)
			}
		}
	}
	select {
	case <-f.done:
		if f.err != nil {
			return zero, f.err
		}
		if f.l.neg {
			return zero, ErrNotFound
		}
		return f.l.val, nil
	case <-ctx.Done():
		return zero, &OpError{Op: "get", Key: keys.Key(k.cfg.Name, id), Err: ctx.Err()}
	}
}

// redisRead is what one read of id's key in Redis found.
type redisRead[V any] struct {
	tok   uint64 // local generation taken before the read
	key   string
	ver   uint64
	err   error // Redis failed (or the key could not be built)
	found bool
	state redisState
	l     loaded[V]
	fb    *loaded[V] // a stale value StaleIfError may serve
}

// readRedis reads id's value from Redis, filling the local tier when it is
// fresh.
func (k *Keyspace[V]) readRedis(ctx context.Context, id string, h uint64) (r redisRead[V]) {
	r.tok = k.local.Token(h)
	r.key, r.ver, r.err = k.keyOf(ctx, id)
	if r.err != nil {
		return r
	}
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	b, found, err := k.c.store.Get(rctx, r.key)
	cancel()
	r.err, r.found = err, found
	if err == nil && found {
		r.l, r.state, r.fb = k.accept(id, h, r.key, r.ver, b, r.tok)
	}
	return r
}

// fetch goes on from a Redis read that found no fresh value: on a miss it
// loads under a lease; when Redis failed it loads directly. stale is what
// may be served if loading fails (StaleIfError), or nil.
func (k *Keyspace[V]) fetch(ctx context.Context, id string, h uint64, stale *loaded[V], r *redisRead[V]) (loaded[V], error) {
	if r.err != nil && errors.Is(r.err, context.Canceled) {
		// The leader's caller gave up during its read: read again, on the
		// shared context, for the others.
		*r = k.readRedis(ctx, id, h)
		if r.err == nil && (r.state == redisFresh || r.state == redisRevalidate) {
			k.st.redisHits.Add(1)
			return r.l, nil
		}
	}
	if r.err != nil {
		k.redisError("get", r.key, r.err)
		return k.loadOrStale(ctx, id, h, r.tok, stale, true)
	}
	key, ver, tok := r.key, r.ver, r.tok
	k.st.redisMisses.Add(1)
	if r.fb != nil {
		stale = r.fb
	}
	if k.cfg.Loader == nil {
		return loaded[V]{}, ErrNotFound
	}
	if (r.found && r.state == redisCorrupt) || k.cfg.DisableLeases {
		return k.loadAndFill(ctx, id, h, key, ver, tok, stale)
	}
	return k.loadLeased(ctx, id, h, key, ver, tok, stale)
}

type redisState uint8

const (
	redisCorrupt    redisState = iota // not an envelope, or undecodable
	redisFresh                        // fresh: filled locally, served
	redisRevalidate                   // stale inside StaleWhileRevalidate: served, refresh queued
	redisStale                        // stale past that: a miss (fb may serve it on loader failure)
)

// accept decodes bytes read from Redis. A fresh value fills the local tier;
// a stale one inside the StaleWhileRevalidate window is served while one
// background refresh runs; a staler one is a miss, returned as fb when the
// StaleIfError window still allows serving it on a loader failure.
func (k *Keyspace[V]) accept(id string, h uint64, key string, ver uint64, b []byte, tok uint64) (l loaded[V], st redisState, fb *loaded[V]) {
	env, err := remote.DecodeEnvelope(b)
	if err == nil {
		l.neg = env.Negative()
		if !l.neg {
			err = k.cfg.Codec.Unmarshal(env.Payload, &l.val)
		}
	}
	if err != nil {
		k.st.corrupt.Add(1)
		k.c.warn.Warn("undecodable value in Redis, treated as a miss", zap.String("key", key), zap.Error(err))
		return l, redisCorrupt, nil
	}
	nowMs := time.Now().UnixMilli()
	switch {
	case nowMs < env.FreshUntilMs:
		k.fillLocal(id, h, ver, l, env.FreshUntilMs, env.DeltaMs, tok)
		return l, redisFresh, nil
	case !l.neg && nowMs < env.FreshUntilMs+k.cfg.StaleWhileRevalidate.Milliseconds():
		k.st.staleServed.Add(1)
		k.refresh(id, h, false)
		return l, redisRevalidate, nil
	case !l.neg && nowMs < env.FreshUntilMs+k.cfg.StaleIfError.Milliseconds():
		return l, redisStale, &l
	}
	return l, redisStale, nil
}

// fillLocal stores a value read from Redis or loaded, unless an
// invalidation of its shard arrived since tok was taken.
func (k *Keyspace[V]) fillLocal(id string, h uint64, ver uint64, l loaded[V], freshUntilMs int64, deltaMs uint32, tok uint64) {
	if hk := k.c.hooks; hk != nil && hk.beforeLocalFill != nil {
		hk.beforeLocalFill(k.cfg.Name, id)
	}
	now := k.c.clk.Precise()
	remain := time.Duration(freshUntilMs-time.Now().UnixMilli()) * time.Millisecond
	if remain <= 0 {
		return
	}
	e := k.newEntry(l, ver, now, remain, time.Duration(deltaMs)*time.Millisecond)
	if !k.local.SetIfUnchanged(h, local.Entry[entry[V]]{Key: id, Value: e, Expire: max(e.fresh, k.staleEnd(&e))}, tok) {
		k.st.localFillsSkipped.Add(1)
	}
}

// newEntry builds a local entry for a value that stays fresh in Redis for
// remain from clock time now, and whose load took delta.
func (k *Keyspace[V]) newEntry(l loaded[V], ver uint64, now int64, remain, delta time.Duration) entry[V] {
	e := entry[V]{val: l.val, neg: l.neg, ver: ver, expiry: now + int64(remain), delta: int64(delta)}
	e.fresh = now + int64(min(k.cfg.LocalTTL, remain))
	e.refreshAt = math.MaxInt64
	if !l.neg {
		e.refreshAt = refreshFrom(e.expiry, e.delta, k.cfg.EarlyRefreshBeta)
	}
	return e
}

// staleEnd is until when an entry may be served if the Loader fails
// (StaleIfError past its expiry; never for negative or degraded entries).
func (k *Keyspace[V]) staleEnd(e *entry[V]) int64 {
	if k.cfg.StaleIfError <= 0 || e.neg || e.degraded {
		return e.fresh
	}
	return e.expiry + int64(k.cfg.StaleIfError)
}

// loadLeased takes the key's lease (or finds the value filled meanwhile).
// The holder loads and fills; the others wait for its fill, bounded by
// LeaseWait, then serve the stale value if Redis has one, and only then
// load for themselves and cache nothing.
func (k *Keyspace[V]) loadLeased(ctx context.Context, id string, h uint64, key string, ver uint64, tok uint64, stale *loaded[V]) (loaded[V], error) {
	lease := leaseKey(key)
	token := k.c.leaseToken()
	deadline := time.Now().Add(k.cfg.LeaseWait)
	backoff := 2 * time.Millisecond
	var lastStale []byte
	for attempt := 0; ; attempt++ {
		rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
		rs, err := k.c.store.GetOrLease(rctx, []remote.Lease{{Key: key, Lease: lease}}, token, k.cfg.LeaseTTL, time.Now().UnixMilli())
		cancel()
		if err != nil {
			k.redisError("lease", key, err)
			return k.loadOrStale(ctx, id, h, tok, stale, true)
		}
		r := rs[0]
		switch r.State {
		case remote.Found:
			l, st, _ := k.accept(id, h, key, ver, r.Value, tok)
			if st == redisCorrupt {
				return k.loadAndFill(ctx, id, h, key, ver, tok, stale)
			}
			if attempt > 0 {
				k.st.leaseWaits.Add(1)
			}
			return l, nil
		case remote.Won:
			k.st.leasesWon.Add(1)
			return k.loadUnderLease(ctx, id, h, key, lease, token, ver, tok, stale)
		}
		if attempt == 0 {
			k.st.leasesLost.Add(1)
		}
		lastStale = r.Value
		if !time.Now().Add(backoff).Before(deadline) {
			break
		}
		if err := wait(ctx, backoff); err != nil {
			return loaded[V]{}, err
		}
		backoff = min(2*backoff, 25*time.Millisecond)
	}
	k.st.leaseTimeouts.Add(1)
	if lastStale != nil {
		if env, err := remote.DecodeEnvelope(lastStale); err == nil && !env.Negative() {
			var l loaded[V]
			if k.cfg.Codec.Unmarshal(env.Payload, &l.val) == nil {
				k.st.staleServed.Add(1)
				return l, nil
			}
		}
	}
	return k.loadOrStale(ctx, id, h, tok, stale, false)
}

// loadUnderLease loads id and fills Redis only if the lease still stands,
// then the local tier. A refused fill means a write raced the load: the
// value is returned to the caller but cached nowhere.
func (k *Keyspace[V]) loadUnderLease(ctx context.Context, id string, h uint64, key, lease, token string, ver uint64, tok uint64, stale *loaded[V]) (loaded[V], error) {
	l, took, err := k.load(ctx, id)
	if err != nil || (l.neg && k.cfg.NegativeTTL == 0) {
		rctx, cancel := k.c.redisCtx(context.WithoutCancel(ctx), k.c.opts.WriteTimeout)
		if rerr := k.c.store.ReleaseLease(rctx, lease, token); rerr != nil {
			k.redisError("release lease", lease, rerr)
		}
		cancel()
		return k.orStale(l, err, stale)
	}
	env, ttl, freshUntil, err := k.envelope(l, took)
	if err != nil {
		k.c.warn.Warn("loaded value not cached", zap.String("key", key), zap.Error(err))
		return l, nil
	}
	if hk := k.c.hooks; hk != nil && hk.beforeRedisFill != nil {
		hk.beforeRedisFill(k.cfg.Name, id)
	}
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
	stored, err := k.c.store.FillLeased(rctx, token, []remote.Filled{{Key: key, Lease: lease, Env: env, TTL: ttl}})
	cancel()
	if err != nil {
		k.redisError("fill", key, err)
		return l, nil
	}
	if !stored[0] {
		k.st.fillsRefused.Add(1)
		return l, nil
	}
	k.fillLocal(id, h, ver, l, freshUntil, deltaMs(took), tok)
	return l, nil
}

// loadAndFill loads without a lease and overwrites Redis (leases off, or a
// corrupt value in the way).
func (k *Keyspace[V]) loadAndFill(ctx context.Context, id string, h uint64, key string, ver uint64, tok uint64, stale *loaded[V]) (loaded[V], error) {
	l, took, err := k.load(ctx, id)
	if err != nil || (l.neg && k.cfg.NegativeTTL == 0) {
		return k.orStale(l, err, stale)
	}
	env, ttl, freshUntil, err := k.envelope(l, took)
	if err != nil {
		k.c.warn.Warn("loaded value not cached", zap.String("key", key), zap.Error(err))
		return l, nil
	}
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
	err = k.c.store.Fill(rctx, key, env, ttl)
	cancel()
	if err != nil {
		k.redisError("fill", key, err)
		return l, nil
	}
	k.fillLocal(id, h, ver, l, freshUntil, deltaMs(took), tok)
	return l, nil
}

// loadOrStale calls the Loader without Redis: Redis is failing (redisDown;
// the value is then cached locally for DegradedLocalTTL only) or a lease
// wait ran out (it is cached nowhere). If the Loader fails too, it serves
// stale when the StaleIfError window allows.
func (k *Keyspace[V]) loadOrStale(ctx context.Context, id string, h uint64, tok uint64, stale *loaded[V], redisDown bool) (loaded[V], error) {
	if k.cfg.Loader == nil {
		if stale != nil {
			k.st.staleOnError.Add(1)
			return *stale, nil
		}
		return loaded[V]{}, ErrNotFound
	}
	k.st.loaderDirect.Add(1)
	l, _, err := k.load(ctx, id)
	if err == nil && redisDown {
		k.fillDegraded(id, h, l, tok)
	}
	return k.orStale(l, err, stale)
}

// fillDegraded caches a value loaded while Redis was failing, for
// DegradedLocalTTL only: invalidations cannot flow, so the entry must not
// live long, but even a second of it spares the source a read storm.
func (k *Keyspace[V]) fillDegraded(id string, h uint64, l loaded[V], tok uint64) {
	if k.cfg.DegradedLocalTTL <= 0 || (l.neg && k.cfg.NegativeTTL == 0) {
		return
	}
	now := k.c.clk.Precise()
	ttl := min(k.cfg.DegradedLocalTTL, k.cfg.LocalTTL)
	e := entry[V]{val: l.val, neg: l.neg, fresh: now + int64(ttl), refreshAt: math.MaxInt64, degraded: true}
	e.expiry = e.fresh
	if k.cfg.Group != nil {
		if v, ok := k.vers.get(k.cfg.Group(id), now); ok {
			e.ver = v
		} else {
			return // the hit check needs the version
		}
	}
	if !k.local.SetIfUnchanged(h, local.Entry[entry[V]]{Key: id, Value: e, Expire: e.fresh}, tok) {
		k.st.localFillsSkipped.Add(1)
	}
}

// orStale replaces a load error by the stale value, if there is one.
func (k *Keyspace[V]) orStale(l loaded[V], err error, stale *loaded[V]) (loaded[V], error) {
	if err != nil && stale != nil {
		k.st.staleOnError.Add(1)
		k.c.warn.Warn("loader failed; serving a stale value (StaleIfError)", zap.Error(err))
		return *stale, nil
	}
	return l, err
}

func deltaMs(d time.Duration) uint32 { return uint32(min(d.Milliseconds(), math.MaxUint32)) }

// leaseKey is the key of the lease on a value key (same Cluster slot).
func leaseKey(key string) string { return keys.LeaseKey(key) }

// load calls the Loader, turning ErrNotFound into a negative result and a
// panic into an error.
func (k *Keyspace[V]) load(ctx context.Context, id string) (l loaded[V], took time.Duration, err error) {
	k.st.loads.Add(1)
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: keyspace %q id %q: %v", ErrLoaderPanic, k.cfg.Name, id, p)
		}
		took = time.Since(start)
		switch {
		case err == nil:
		case errors.Is(err, ErrNotFound):
			l, err = loaded[V]{neg: true}, nil
		default:
			k.st.loadErrors.Add(1)
		}
	}()
	l.val, err = k.cfg.Loader(ctx, id)
	return l, 0, err
}

// envelope encodes a loaded value for Redis and picks its TTL.
func (k *Keyspace[V]) envelope(l loaded[V], took time.Duration) (env []byte, ttl time.Duration, freshUntilMs int64, err error) {
	var e remote.Envelope
	ttl = k.cfg.TTL
	if l.neg {
		e.Flags = remote.FlagNegative
		ttl = k.cfg.NegativeTTL
	} else {
		if e.Payload, err = k.encode(l.val); err != nil {
			return nil, 0, 0, err
		}
		ttl = k.jitter(ttl)
	}
	e.DeltaMs = deltaMs(took)
	e.FreshUntilMs = time.Now().Add(ttl).UnixMilli()
	return remote.AppendEnvelope(make([]byte, 0, len(e.Payload)+remote.EnvelopeOverhead), &e), ttl + k.staleWindow(l.neg), e.FreshUntilMs, nil
}

func (k *Keyspace[V]) encode(v V) ([]byte, error) {
	b, err := k.cfg.Codec.Marshal(v)
	if err != nil {
		return nil, codecError("encode", err)
	}
	if len(b) > k.cfg.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, MaxValueSize is %d", ErrValueTooLarge, len(b), k.cfg.MaxValueSize)
	}
	return b, nil
}

// staleWindow is how long Redis keeps a value past its fresh TTL, so that
// it can still be served stale.
func (k *Keyspace[V]) staleWindow(neg bool) time.Duration {
	if neg {
		return 0
	}
	return max(k.cfg.StaleWhileRevalidate, k.cfg.StaleIfError)
}

func (k *Keyspace[V]) jitter(ttl time.Duration) time.Duration {
	if k.cfg.TTLJitter <= 0 {
		return ttl
	}
	return ttl + time.Duration(rand.Int63n(int64(k.cfg.TTLJitter)+1))
}

func (k *Keyspace[V]) groupVersion(ctx context.Context, group string) (uint64, error) {
	now := k.c.clk.Now()
	if now < k.c.serveUntil.Load() {
		if v, ok := k.vers.get(group, now); ok {
			return v, nil
		}
	}
	if err := keys.Validate(group); err != nil {
		return 0, fmt.Errorf("tiercache: group of keyspace %q: %w", k.cfg.Name, err)
	}
	tok := k.vers.token()
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	defer cancel()
	v, err := k.c.store.Version(rctx, keys.VersionKey(k.cfg.Name, group))
	if err != nil {
		return 0, err
	}
	k.vers.fill(group, v, k.c.clk.Precise()+int64(k.cfg.LocalTTL), tok)
	return v, nil
}

func (k *Keyspace[V]) redisError(op, key string, err error) {
	k.st.redisErrors.Add(1)
	k.c.warn.Warn("redis "+op+" failed; serving from the loader", zap.String("key", key), zap.Error(err))
}

func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Stats returns the keyspace's counters.
func (k *Keyspace[V]) Stats() Stats {
	// Read before the shard counters: every unserved entry was counted as
	// a shard hit first, so the difference cannot go below zero.
	notServed := k.st.localNotServed.Load()
	ls := k.local.Stats()
	return Stats{
		LocalHits:         ls.Hits - notServed,
		LocalMisses:       ls.Misses + k.st.localBypass.Load() + notServed,
		LocalEvictions:    ls.Evictions,
		LocalEntries:      k.local.Len(),
		RedisHits:         k.st.redisHits.Load(),
		RedisMisses:       k.st.redisMisses.Load(),
		RedisErrors:       k.st.redisErrors.Load(),
		Corrupt:           k.st.corrupt.Load(),
		Loads:             k.st.loads.Load(),
		LoadErrors:        k.st.loadErrors.Load(),
		NegativeHits:      k.st.negativeHits.Load(),
		LeasesWon:         k.st.leasesWon.Load(),
		LeasesLost:        k.st.leasesLost.Load(),
		LeaseWaits:        k.st.leaseWaits.Load(),
		LeaseTimeouts:     k.st.leaseTimeouts.Load(),
		FillsRefused:      k.st.fillsRefused.Load(),
		EarlyRefreshes:    k.st.earlyRefreshes.Load(),
		Revalidations:     k.st.revalidations.Load(),
		RefreshesDropped:  k.st.refreshesDropped.Load(),
		StaleServed:       k.st.staleServed.Load(),
		StaleOnError:      k.st.staleOnError.Load(),
		LoaderDirect:      k.st.loaderDirect.Load(),
		LocalFillsSkipped: k.st.localFillsSkipped.Load(),
		Sets:              k.st.sets.Load(),
		Deletes:           k.st.deletes.Load(),
		GroupBumps:        k.st.groupBumps.Load(),
		Evicted:           k.st.evicted.Load(),
	}
}
