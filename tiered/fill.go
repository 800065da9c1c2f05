package tiered

// The fill step: what a load may cache, the envelope it is stored in, the
// Redis fill (under the lease, or overwriting a corrupt value), and the
// local fill, which an invalidation that arrived since the Redis read
// voids. Values loaded while Redis fails fill the local tier only, briefly.

import (
	"context"
	"fmt"
	"math/rand"
	"time"

	"github.com/klauspost/compress/s2"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// fills is what one Redis round trip of a batch stores: the writes, and for
// each the miss and what its local fill holds if Redis takes it.
type fills[V any] struct {
	writes []remote.Write
	misses []*miss[V]
	values []decoded[V]
}

func (f *fills[V]) add(w remote.Write, m *miss[V], v decoded[V]) {
	f.writes, f.misses, f.values = append(f.writes, w), append(f.misses, m), append(f.values, v)
}

// fill ends every loaded miss of ms and caches what may be cached: under
// the lease where one is held, overwriting where a corrupt value is in the
// way, locally and briefly where Redis failed; a lease whose load is not
// to be cached is given back.
func (k *Keyspace[V]) fill(ctx context.Context, b *batch[V], ms []*miss[V], took time.Duration) {
	var leased, over fills[V]
	var release []*miss[V]
	for _, m := range ms {
		if m.err != nil {
			if m.step == stepLoadLease {
				release = append(release, m)
			}
			k.orStale(m)
			continue
		}
		switch m.step {
		case stepLoadDown:
			k.fillDegraded(m)
		case stepLoadLease, stepLoadOver:
			w, v, ok := k.sealFill(m, took)
			switch {
			case !ok && m.step == stepLoadLease:
				release = append(release, m)
			case m.step == stepLoadLease:
				leased.add(w, m, v)
			case ok:
				over.add(w, m, v)
			}
		}
		m.finish(TierLoader, m.result, nil)
	}
	k.releaseLeases(ctx, b.token, release)
	k.fillLeased(ctx, b.token, &leased)
	k.fillOver(ctx, &over)
}

// sealFill builds the Redis write of a loaded value, and what the local tier
// holds once Redis took it. ok is false for a value not to be cached: a
// "not found" without NegativeTTL, or a value the codec refuses or that
// exceeds MaxValueSize (logged).
func (k *Keyspace[V]) sealFill(m *miss[V], took time.Duration) (w remote.Write, v decoded[V], ok bool) {
	if !k.cacheable(m.result) {
		return w, v, false
	}
	s, err := k.envelope(m.result, k.ttlFor(m.id, m.result, 0), took)
	if err != nil {
		k.client.warn.Warn("loaded value not cached", zap.String("key", m.key), zap.Error(err))
		return w, v, false
	}
	w = remote.Write{Key: m.key, Lease: keys.LeaseKey(m.key), Env: s.env, TTL: s.redisTTL, Version: s.version}
	return w, decoded[V]{loaded: m.result, expiry: s.expiry, loadTime: took, size: s.size}, true
}

// cacheable reports whether a loaded result may be cached at all: a "not
// found" is cached only with a NegativeTTL.
func (k *Keyspace[V]) cacheable(l loaded[V]) bool { return !l.negative || k.config.NegativeTTL > 0 }

// fillLeased stores f in Redis where the leases still stand, then locally.
// A refused fill means a write raced the load: the value was returned to
// its callers but is cached nowhere.
func (k *Keyspace[V]) fillLeased(ctx context.Context, token string, f *fills[V]) {
	if len(f.writes) == 0 {
		return
	}
	if hk := k.client.hooks; hk != nil && hk.beforeRedisFill != nil {
		for _, m := range f.misses {
			hk.beforeRedisFill(k.config.Name, m.id)
		}
	}
	outcomes, err := k.client.store.FillLeased(ctx, token, f.writes)
	if err != nil {
		k.redisError("fill", f.writes[0].Key, err)
		return
	}
	for i, m := range f.misses {
		switch outcomes[i] {
		case remote.Stored:
			k.fillLocal(m, f.values[i])
		case remote.Older:
			k.counters.staleWritesRefused.Add(1)
		default:
			k.counters.fillsRefused.Add(1)
		}
	}
}

// fillOver overwrites Redis with f (no lease: leases are off, or a corrupt
// value was in the way), then fills locally.
func (k *Keyspace[V]) fillOver(ctx context.Context, f *fills[V]) {
	if len(f.writes) == 0 {
		return
	}
	if err := k.client.store.Fill(ctx, f.writes); err != nil {
		k.redisError("fill", f.writes[0].Key, err)
		return
	}
	for i, m := range f.misses {
		k.fillLocal(m, f.values[i])
	}
}

// fillLocal stores a value read from Redis, or loaded and filled, unless an
// invalidation of its shard arrived since m.gen was taken.
func (k *Keyspace[V]) fillLocal(m *miss[V], v decoded[V]) {
	if hk := k.client.hooks; hk != nil && hk.beforeLocalFill != nil {
		hk.beforeLocalFill(k.config.Name, m.id)
	}
	now := k.client.clock.Precise()
	if v.expiry <= now {
		return
	}
	e := k.newEntry(v, m.version, now)
	if !k.local.SetIfUnchanged(m.hash, k.localEntry(m.id, &e, v.size), m.gen) {
		k.counters.localFillsSkipped.Add(1)
	}
}

// localEntry is what the local tier stores for id: the entry, until it can
// no longer be served even stale, and its encoded size.
func (k *Keyspace[V]) localEntry(id string, e *entry[V], size int) local.Entry[entry[V]] {
	return local.Entry[entry[V]]{Key: id, Value: *e, Expire: int64(max(e.freshUntil, k.staleEnd(e))), Size: int64(size)}
}

// fillDegraded caches a value loaded while Redis was failing, for
// DegradedLocalTTL only: invalidations cannot flow, so the entry must not
// live long, but even a second of it spares the source a read storm.
func (k *Keyspace[V]) fillDegraded(m *miss[V]) {
	if k.config.DegradedLocalTTL <= 0 || !k.cacheable(m.result) {
		return
	}
	now := k.client.clock.Precise()
	e := entry[V]{value: m.result.value, negative: m.result.negative, refreshAt: clock.Never, degraded: true}
	e.freshUntil = now.Add(min(k.config.DegradedLocalTTL, k.config.LocalTTL))
	e.expiry = e.freshUntil
	if k.config.Group != nil {
		v, ok := k.versions.get(k.config.Group(m.id), now)
		if !ok {
			return // the hit check needs the version
		}
		e.version = v
	}
	size := 0
	if k.config.LocalMaxBytes > 0 && !e.negative {
		b, err := k.encode(e.value)
		if err != nil {
			return
		}
		size = len(b)
	}
	if !k.local.SetIfUnchanged(m.hash, k.localEntry(m.id, &e, size), m.gen) {
		k.counters.localFillsSkipped.Add(1)
	}
}

// newEntry builds the local entry of v, read under group version at clock
// time now.
func (k *Keyspace[V]) newEntry(v decoded[V], version uint64, now clock.Time) entry[V] {
	e := entry[V]{value: v.value, negative: v.negative, version: version, expiry: v.expiry, loadTime: v.loadTime}
	e.freshUntil = now.Add(min(k.config.LocalTTL, v.expiry.Sub(now)))
	e.refreshAt = clock.Never
	if !v.negative {
		e.refreshAt = refreshFrom(e.expiry, e.loadTime, k.config.EarlyRefreshBeta)
	}
	return e
}

// staleEnd is until when an entry may be served if the Loader fails
// (StaleIfError past its expiry; never for negative or degraded entries).
func (k *Keyspace[V]) staleEnd(e *entry[V]) clock.Time {
	if k.config.StaleIfError <= 0 || e.negative || e.degraded {
		return e.freshUntil
	}
	return e.expiry.Add(k.config.StaleIfError)
}

// sealed is a value encoded for Redis: the envelope, its TTL in Redis (the
// fresh TTL plus the stale windows), its expiry on this process's clock, and
// its version as the write scripts compare it ("" without VersionOf).
type sealed struct {
	env      []byte
	redisTTL time.Duration
	expiry   clock.Time
	version  string
	size     int // the encoded value's length, before compression
}

// envelope encodes l, fresh for ttl, whose load took took.
func (k *Keyspace[V]) envelope(l loaded[V], ttl, took time.Duration) (sealed, error) {
	var payload []byte
	if !l.negative {
		var err error
		if payload, err = k.encode(l.value); err != nil {
			return sealed{}, err
		}
	}
	return k.seal(l, payload, ttl, took), nil
}

// seal wraps an encoded value in its envelope: fresh for ttl by the server's
// clock, compressed from CompressAbove bytes, with its version.
func (k *Keyspace[V]) seal(l loaded[V], payload []byte, ttl, took time.Duration) sealed {
	e := remote.Envelope{Delta: took, FreshUntil: remote.ToUnixMilli(k.client.serverNow().Add(ttl)), Payload: payload}
	if l.negative {
		e.Flags = remote.FlagNegative
	}
	if k.config.CompressAbove > 0 && len(payload) >= k.config.CompressAbove {
		e.Flags |= remote.FlagCompressed
		e.Payload = s2.Encode(nil, payload)
	}
	s := sealed{redisTTL: ttl + k.staleWindow(l.negative), expiry: k.client.localTime(e.FreshUntil), size: len(payload)}
	if k.config.VersionOf != nil && !l.negative {
		e.Version = k.config.VersionOf(l.value)
		s.version = remote.VersionBytes(e.Version)
	}
	s.env = remote.AppendEnvelope(make([]byte, 0, len(e.Payload)+remote.EnvelopeOverhead), &e)
	return s
}

func (k *Keyspace[V]) encode(v V) ([]byte, error) {
	b, err := k.config.Codec.Marshal(v)
	if err != nil {
		return nil, codecError("encode", err)
	}
	if len(b) > k.config.MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, MaxValueSize is %d", ErrValueTooLarge, len(b), k.config.MaxValueSize)
	}
	return b, nil
}

// ttlFor is how long a value of id stays fresh in Redis: a Set's WithTTL
// (given, when positive), else TTLFor's answer, else TTL; with jitter. A
// "not found" stays NegativeTTL.
func (k *Keyspace[V]) ttlFor(id string, l loaded[V], given time.Duration) time.Duration {
	switch {
	case l.negative:
		return k.config.NegativeTTL
	case given > 0:
	case k.config.TTLFor != nil:
		given = k.config.TTLFor(id, l.value)
	}
	if given <= 0 {
		given = k.config.TTL
	}
	return k.jitter(given)
}

// staleWindow is how long Redis keeps a value past its fresh TTL, so that
// it can still be served stale.
func (k *Keyspace[V]) staleWindow(negative bool) time.Duration {
	if negative {
		return 0
	}
	return max(k.config.StaleWhileRevalidate, k.config.StaleIfError)
}

func (k *Keyspace[V]) jitter(ttl time.Duration) time.Duration {
	if k.config.TTLJitter <= 0 {
		return ttl
	}
	return ttl + time.Duration(rand.Int63n(int64(k.config.TTLJitter)+1))
}
