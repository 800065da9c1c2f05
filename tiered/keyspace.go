package tiered

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"time"

	"github.com/cespare/xxhash/v2"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Keyspace is one kind of cached data with values of type V. It is safe for
// concurrent use. Create it with NewKeyspace.
type Keyspace[V any] struct {
	c     *Client
	cfg   Config[V]
	local *local.Cache[entry[V]]
	hash  func(string) uint64
	sf    singleflight.Group
	vers  versions
	st    counters
}

// entry is what the local tier holds: the decoded value, so a hit neither
// allocates nor decodes.
type entry[V any] struct {
	val V
	neg bool   // a cached "not found"
	ver uint64 // the group version the value was read under
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
	if e, ok := k.lookup(h, id); ok {
		if e.neg {
			k.st.negativeHits.Add(1)
			var zero V
			return zero, ErrNotFound
		}
		return e.val, nil
	}
	return k.miss(ctx, id, h)
}

// lookup is the hit path: one clock load, one shard lock, no allocation.
func (k *Keyspace[V]) lookup(h uint64, id string) (entry[V], bool) {
	now := k.c.clk.Now()
	if now >= k.c.serveUntil.Load() {
		// The bus is not known to be healthy: local entries may have
		// missed invalidations.
		k.st.localBypass.Add(1)
		return entry[V]{}, false
	}
	e, ok := k.local.Get(h, id, now)
	if ok && k.cfg.Group != nil {
		ver, known := k.vers.get(k.cfg.Group(id), now)
		ok = known && ver == e.ver
	}
	return e, ok
}

type loaded[V any] struct {
	val V
	neg bool
}

// miss coalesces concurrent misses of one id in this process into one fetch
// that runs on its own context (bounded by LoadTimeout), so a caller giving
// up does not fail the others.
func (k *Keyspace[V]) miss(ctx context.Context, id string, h uint64) (V, error) {
	var zero V
	if k.c.closed.Load() {
		return zero, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return zero, &OpError{Op: "get", Key: keys.Key(k.cfg.Name, id), Err: err}
	}
	ch := k.sf.DoChan(id, func() (v any, err error) {
		lctx, cancel := k.c.loadCtx(ctx, k.cfg.LoadTimeout)
		defer cancel()
		return k.fetch(lctx, id, h)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return zero, r.Err
		}
		l := r.Val.(loaded[V])
		if l.neg {
			return zero, ErrNotFound
		}
		return l.val, nil
	case <-ctx.Done():
		return zero, &OpError{Op: "get", Key: keys.Key(k.cfg.Name, id), Err: ctx.Err()}
	}
}

// fetch reads id from Redis and, on a miss, loads it under a lease.
func (k *Keyspace[V]) fetch(ctx context.Context, id string, h uint64) (loaded[V], error) {
	tok := k.local.Token(h)
	ver, err := k.version(ctx, id)
	if err != nil {
		k.redisError("version", keys.Key(k.cfg.Name, id), err)
		return k.loadDirect(ctx, id)
	}
	key := k.redisKey(id, ver)
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	b, found, err := k.c.store.Get(rctx, key)
	cancel()
	if err != nil {
		k.redisError("get", key, err)
		return k.loadDirect(ctx, id)
	}
	corrupt := false
	if found {
		if l, ok := k.accept(id, h, key, ver, b, tok); ok {
			k.st.redisHits.Add(1)
			return l, nil
		}
		corrupt = true
	} else {
		k.st.redisMisses.Add(1)
	}
	if k.cfg.Loader == nil {
		return loaded[V]{}, ErrNotFound
	}
	if corrupt || k.cfg.DisableLeases {
		return k.loadAndFill(ctx, id, h, key, ver, tok)
	}
	return k.loadLeased(ctx, id, h, key, ver, tok)
}

// accept decodes bytes read from Redis and fills the local tier with them.
// ok is false for bytes that are corrupt, foreign or undecodable.
func (k *Keyspace[V]) accept(id string, h uint64, key string, ver uint64, b []byte, tok uint64) (loaded[V], bool) {
	env, err := remote.DecodeEnvelope(b)
	var l loaded[V]
	if err == nil {
		l.neg = env.Negative()
		if !l.neg {
			err = k.cfg.Codec.Unmarshal(env.Payload, &l.val)
		}
	}
	if err != nil {
		k.st.corrupt.Add(1)
		k.c.warn.Warn("undecodable value in Redis, treated as a miss", zap.String("key", key), zap.Error(err))
		return l, false
	}
	k.fillLocal(id, h, ver, l, env.FreshUntilMs, tok)
	return l, true
}

// fillLocal stores a value read from Redis or loaded, unless an
// invalidation of its shard arrived since tok was taken.
func (k *Keyspace[V]) fillLocal(id string, h uint64, ver uint64, l loaded[V], freshUntilMs int64, tok uint64) {
	if hk := k.c.hooks; hk != nil && hk.beforeLocalFill != nil {
		hk.beforeLocalFill(k.cfg.Name, id)
	}
	ttl := k.cfg.LocalTTL
	if rem := time.Until(time.UnixMilli(freshUntilMs)); rem < ttl {
		ttl = rem
	}
	if ttl <= 0 {
		return
	}
	if !k.local.SetIfUnchanged(h, id, entry[V]{val: l.val, neg: l.neg, ver: ver}, k.c.clk.Precise()+int64(ttl), tok) {
		k.st.localFillsSkipped.Add(1)
	}
}

// loadLeased takes the key's lease (or finds the value filled meanwhile).
// The holder loads and fills; the others wait for its fill, bounded by
// LeaseWait, then load for themselves and cache nothing.
func (k *Keyspace[V]) loadLeased(ctx context.Context, id string, h uint64, key string, ver uint64, tok uint64) (loaded[V], error) {
	lease := keys.LeaseKey(key)
	token := k.c.leaseToken()
	deadline := time.Now().Add(k.cfg.LeaseWait)
	backoff := 2 * time.Millisecond
	for attempt := 0; ; attempt++ {
		rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
		rs, err := k.c.store.GetOrLease(rctx, []remote.Lease{{Key: key, Lease: lease}}, token, k.cfg.LeaseTTL)
		cancel()
		if err != nil {
			k.redisError("lease", key, err)
			return k.loadDirect(ctx, id)
		}
		switch rs[0].State {
		case remote.Found:
			if l, ok := k.accept(id, h, key, ver, rs[0].Value, tok); ok {
				if attempt > 0 {
					k.st.leaseWaits.Add(1)
				}
				return l, nil
			}
			return k.loadAndFill(ctx, id, h, key, ver, tok)
		case remote.Won:
			k.st.leasesWon.Add(1)
			return k.loadUnderLease(ctx, id, h, key, lease, token, ver, tok)
		}
		if attempt == 0 {
			k.st.leasesLost.Add(1)
		}
		if !time.Now().Add(backoff).Before(deadline) {
			k.st.leaseTimeouts.Add(1)
			return k.loadDirect(ctx, id)
		}
		if err := wait(ctx, backoff); err != nil {
			return loaded[V]{}, err
		}
		backoff = min(2*backoff, 25*time.Millisecond)
	}
}

// loadUnderLease loads id and fills Redis only if the lease still stands,
// then the local tier. A refused fill means a write raced the load: the
// value is returned to the caller but cached nowhere.
func (k *Keyspace[V]) loadUnderLease(ctx context.Context, id string, h uint64, key, lease, token string, ver uint64, tok uint64) (loaded[V], error) {
	l, took, err := k.load(ctx, id)
	if err != nil || (l.neg && k.cfg.NegativeTTL == 0) {
		rctx, cancel := k.c.redisCtx(context.WithoutCancel(ctx), k.c.opts.WriteTimeout)
		if rerr := k.c.store.ReleaseLease(rctx, lease, token); rerr != nil {
			k.redisError("release lease", lease, rerr)
		}
		cancel()
		return l, err
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
	k.fillLocal(id, h, ver, l, freshUntil, tok)
	return l, nil
}

// loadAndFill loads without a lease and overwrites Redis (leases off, or a
// corrupt value in the way).
func (k *Keyspace[V]) loadAndFill(ctx context.Context, id string, h uint64, key string, ver uint64, tok uint64) (loaded[V], error) {
	l, took, err := k.load(ctx, id)
	if err != nil || (l.neg && k.cfg.NegativeTTL == 0) {
		return l, err
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
	k.fillLocal(id, h, ver, l, freshUntil, tok)
	return l, nil
}

// loadDirect calls the Loader and caches nothing: Redis is failing or a
// lease wait ran out.
func (k *Keyspace[V]) loadDirect(ctx context.Context, id string) (loaded[V], error) {
	if k.cfg.Loader == nil {
		return loaded[V]{}, ErrNotFound
	}
	l, _, err := k.load(ctx, id)
	return l, err
}

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
	e.DeltaMs = uint32(min(took.Milliseconds(), 1<<31))
	e.FreshUntilMs = time.Now().Add(ttl).UnixMilli()
	return remote.AppendEnvelope(make([]byte, 0, len(e.Payload)+remote.EnvelopeOverhead), &e), ttl, e.FreshUntilMs, nil
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

func (k *Keyspace[V]) jitter(ttl time.Duration) time.Duration {
	if k.cfg.TTLJitter <= 0 {
		return ttl
	}
	return ttl + time.Duration(rand.Int63n(int64(k.cfg.TTLJitter)+1))
}

// version returns the current version of id's group (0 without groups).
func (k *Keyspace[V]) version(ctx context.Context, id string) (uint64, error) {
	if k.cfg.Group == nil {
		return 0, nil
	}
	return k.groupVersion(ctx, k.cfg.Group(id))
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

// redisKey is where id's value lives in Redis: "<ns>:<id>", or
// "<ns>:v<version>:<id>" in a keyspace with groups.
func (k *Keyspace[V]) redisKey(id string, ver uint64) string {
	if k.cfg.Group == nil {
		return keys.Key(k.cfg.Name, id)
	}
	return keys.VersionedKey(k.cfg.Name, ver, id)
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
	ls := k.local.Stats()
	return Stats{
		LocalHits:         ls.Hits,
		LocalMisses:       ls.Misses + k.st.localBypass.Load(),
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
		LocalFillsSkipped: k.st.localFillsSkipped.Load(),
		Sets:              k.st.sets.Load(),
		Deletes:           k.st.deletes.Load(),
		GroupBumps:        k.st.groupBumps.Load(),
		Evicted:           k.st.evicted.Load(),
	}
}
