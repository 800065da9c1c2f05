package tiered

// The Redis read of the miss path: one GET for a Get, pipelined GETs for a
// GetMany (one round trip; one per node on Redis Cluster). Each value found
// is decoded once and classified by its freshness; fresh values fill the
// local tier.

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/remote"
)

// decoded is a value read from Redis: the value, its fresh-until time on
// this process's clock, how long its last load took, and its encoded size
// (what LocalMaxBytes counts).
type decoded[V any] struct {
	loaded[V]
	expiry   clock.Time
	loadTime time.Duration
	size     int
}

// readRedis reads the keys of the batch's misses at stepRead and moves each
// on: fresh values (and stale ones inside StaleWhileRevalidate, which queue a
// refresh) are done, the rest go to the lease step, or to the loader
// directly when Redis fails. When the caller's context ended during the
// read, the misses stay at stepRead for fetch to read again.
func (k *Keyspace[V]) readRedis(ctx context.Context, b *batch[V]) {
	ms := b.at(stepRead)
	for _, m := range ms {
		m.gen = k.local.Token(m.hash)
	}
	if err := k.resolveKeys(ctx, ms); err != nil {
		k.redisFailed(ms, "version", err)
		return
	}
	if k.readTakesLeases(b) {
		k.readOrLease(ctx, b, ms)
		return
	}
	var values [][]byte
	var err error
	if len(ms) == 1 { // a Get's: one GET, nothing to allocate
		var v []byte
		if v, _, err = k.client.store.Get(ctx, ms[0].key); err == nil {
			k.readValue(b, ms[0], v)
			return
		}
	} else {
		rkeys := make([]string, len(ms))
		for i, m := range ms {
			rkeys[i] = m.key
		}
		values, err = k.client.store.GetMany(ctx, rkeys)
	}
	if err != nil {
		if ctx.Err() == nil {
			k.redisFailed(ms, "get", err)
		}
		return
	}
	for i, m := range ms {
		k.readValue(b, m, values[i])
	}
}

// readValue settles one miss on the bytes Redis holds for it (nil: absent).
func (k *Keyspace[V]) readValue(b *batch[V], m *miss[V], raw []byte) {
	k.reads.record(raw != nil)
	if raw == nil {
		k.counters.redisMisses.Add(1)
		k.nextAfterMiss(b, m, stepLease)
		return
	}
	v, err := k.decode(m, raw)
	if err != nil {
		k.counters.redisMisses.Add(1)
		k.nextAfterMiss(b, m, stepLoadOver) // a lease cannot help: overwrite it
		return
	}
	now := k.client.clock.Precise()
	switch {
	case now < v.expiry:
		k.counters.redisHits.Add(1)
		k.fillLocal(m, v)
		if k.verify != nil {
			k.sampleForVerify(m.id, v.loaded, b.loader)
		}
		m.finish(TierRedis, v.loaded, nil)
		return
	case v.negative:
	case now < v.expiry.Add(k.config.StaleWhileRevalidate):
		k.counters.redisHits.Add(1)
		k.counters.staleServed.Add(1)
		k.refresh(refreshJob[V]{id: m.id, hash: m.hash, loader: b.loader})
		m.finish(TierStale, v.loaded, nil)
		return
	case now < v.expiry.Add(k.config.StaleIfError):
		stale := v.loaded // a copy: v itself stays off the heap
		m.stale = &stale
	}
	k.counters.redisMisses.Add(1)
	k.nextAfterMiss(b, m, stepLease)
}

// nextAfterMiss moves a miss that Redis could not answer to next, or to
// stepLoadOver when leases are off, or ends it as "not found" when there is
// nothing to load with (cache-aside).
func (k *Keyspace[V]) nextAfterMiss(b *batch[V], m *miss[V], next step) {
	switch {
	case !b.loader.exists():
		m.finish(TierRedis, loaded[V]{}, ErrNotFound)
	case k.config.DisableLeases:
		m.step = stepLoadOver
	default:
		m.step = next
	}
}

// decode parses an envelope read from Redis and decodes its value. Bytes
// that are not a valid envelope, or that the codec refuses, are counted and
// logged as corrupt. The codec decodes into m.result (zeroed first), which
// lives on the heap already: a value decoded into a local would escape, one
// allocation more per value read.
func (k *Keyspace[V]) decode(m *miss[V], raw []byte) (v decoded[V], err error) {
	env, err := remote.DecodeEnvelope(raw)
	if err == nil {
		v.negative = env.Negative()
		if !v.negative {
			payload := env.Payload
			if env.Flags&remote.FlagCompressed != 0 {
				payload, err = k.decompress(payload)
			}
			if err == nil {
				var zero V
				m.result.value = zero
				err = k.config.Codec.Unmarshal(payload, &m.result.value)
				v.value, v.size = m.result.value, len(payload)
			}
		}
	}
	if err != nil {
		k.counters.corrupt.Add(1)
		k.client.warn.Warn("undecodable value in Redis, treated as a miss", zap.String("key", m.key), zap.Error(err))
		return v, err
	}
	v.expiry = k.client.localTime(env.FreshUntil)
	v.loadTime = env.Delta
	return v, nil
}

// decompress undoes CompressAbove's compression, refusing a value that
// would decompress past MaxValueSize.
func (k *Keyspace[V]) decompress(b []byte) ([]byte, error) {
	n, err := s2.DecodedLen(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if n > k.config.MaxValueSize {
		return nil, fmt.Errorf("%w: decompresses to %d bytes, MaxValueSize is %d", ErrCorrupt, n, k.config.MaxValueSize)
	}
	out, err := s2.Decode(nil, b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return out, nil
}

// Reading with the lease. A read that finds nothing must take the lease in
// a second round trip, then fill in a third; reading with the lease script
// (which returns the value when it is fresh) saves one, but costs a Lua call
// on every hit, dearer than a GET. So each keyspace watches how its recent
// Redis reads went: while most find nothing, misses read with the lease;
// while most hit, they read with GET.

// readWindow counts the outcome of a keyspace's recent Redis reads: found
// in the low 32 bits, absent in the high ones, restarted every
// readWindowSize reads.
type readWindow struct {
	counts  atomic.Uint64
	leasing atomic.Bool // most recent reads found nothing: read with the lease
}

const readWindowSize = 64

func (w *readWindow) record(found bool) {
	add := uint64(1) << 32
	if found {
		add = 1
	}
	n := w.counts.Add(add)
	hits, misses := n&(1<<32-1), n>>32
	if hits+misses >= readWindowSize && w.counts.CompareAndSwap(n, 0) {
		w.leasing.Store(misses > hits)
	}
}

// readTakesLeases reports whether b's read takes the leases in the same
// round trip: leases on, something to load with, no StaleWhileRevalidate
// (whose stale values are served, not loaded over), and a keyspace whose
// reads mostly miss.
func (k *Keyspace[V]) readTakesLeases(b *batch[V]) bool {
	return k.reads.leasing.Load() && b.loader.exists() && !k.config.DisableLeases && k.config.StaleWhileRevalidate == 0
}

// readOrLease is the read step through the lease script: a fresh value is a
// hit; otherwise the lease is taken (or found taken) at once.
func (k *Keyspace[V]) readOrLease(ctx context.Context, b *batch[V], ms []*miss[V]) {
	for _, m := range ms {
		m.step = stepLease
	}
	k.takeLeases(ctx, b)
	for _, m := range ms {
		switch {
		case m.step == stepDone && m.err == nil:
			k.reads.record(true)
			k.counters.redisHits.Add(1)
			if k.verify != nil {
				k.sampleForVerify(m.id, m.result, b.loader)
			}
		case m.step == stepLoadLease || m.step == stepAwait:
			k.reads.record(false)
			k.counters.redisMisses.Add(1)
		}
	}
}
