package tiered

// The miss path's shared state: one miss per id the local tier could not
// answer, one batch per call (Get makes a batch of one, GetMany one for all
// its misses, a background refresh one of its own), and the order of the
// steps every batch goes through:
//
//	read.go   read Redis (one round trip); fresh values fill the local tier
//	lease.go  take the leases of what is absent or stale (one round trip);
//	          wait, bounded by LeaseWait, for other processes' fills
//	load.go   call the loader once for the batch
//	fill.go   fill Redis under the leases (one round trip), then the local tier
//
// Each step acts on the misses at its own step and moves them on; a miss is
// done when its result (or error) is final.

import (
	"context"
	"slices"
	"time"

	"github.com/tiercache/tiercache/keys"
)

// miss is one id on its way through the miss path, passed by pointer to
// every step.
type miss[V any] struct {
	id      string
	hash    uint64
	gen     uint64     // the local shard's generation before Redis was read: an invalidation since voids the local fill
	key     string     // the Redis key (epoch and group version applied), once resolved
	epoch   uint64     // the keyspace epoch key was built with
	version uint64     // the group version key was built with (0 without groups)
	stale   *loaded[V] // served if loading fails (StaleIfError), or nil
	held    []byte     // the stale bytes left in Redis while another process holds the lease
	step    step
	result  loaded[V]
	err     error
	outcome outcome // what answered it, for an Observer
}

// step is where a miss stands.
type step uint8

const (
	stepRead      step = iota // read Redis
	stepLease                 // absent or stale in Redis: take the lease
	stepAwait                 // another process holds the lease: wait for its fill
	stepLoadLease             // lease held: load, fill Redis under the lease
	stepLoadOver              // a corrupt value in Redis, or leases off: load, overwrite Redis
	stepLoadDown              // Redis failed: load, fill the local tier for DegradedLocalTTL only
	stepLoadAlone             // the lease wait ran out: load, cache nothing
	stepDone                  // result or err is final
)

// finish makes l (or err), from tier, the miss's final answer.
func (m *miss[V]) finish(tier Tier, l loaded[V], err error) {
	m.result, m.err, m.step = l, err, stepDone
	m.outcome.tier = tier
}

// batch is the misses of one call and what they share.
type batch[V any] struct {
	misses []*miss[V]
	loader loader[V]
	token  string // the lease token of this batch, once it asked for leases
	// Who is told when every miss is done: a Get's flight, or a channel.
	flight *flight[V]
	done   chan struct{}
}

// single is a batch of one miss in one allocation: a Get's.
type single[V any] struct {
	batch batch[V]
	miss  miss[V]
	list  [1]*miss[V]
}

func newSingle[V any](m miss[V], ld loader[V]) *single[V] {
	s := &single[V]{miss: m}
	s.list[0] = &s.miss
	s.batch.misses, s.batch.loader = s.list[:], ld
	return s
}

// finish tells whoever waits on b that every miss is done.
func (b *batch[V]) finish(k *Keyspace[V]) {
	if b.flight != nil {
		m := b.misses[0]
		k.flights.land(b.flight, m)
		return
	}
	close(b.done)
}

// pending returns the misses not done yet.
func (b *batch[V]) pending() []*miss[V] {
	var out []*miss[V]
	for _, m := range b.misses {
		if m.step != stepDone {
			out = append(out, m)
		}
	}
	return out
}

// at returns the misses at any of steps (b.misses itself when they all are).
func (b *batch[V]) at(steps ...step) []*miss[V] {
	all := true
	for _, m := range b.misses {
		if !slices.Contains(steps, m.step) {
			all = false
			break
		}
	}
	if all {
		return b.misses
	}
	var out []*miss[V]
	for _, m := range b.misses {
		for _, s := range steps {
			if m.step == s {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// run takes a batch through the miss path and then finishes it. The Redis
// read happens on the caller's goroutine, so a Redis hit costs no goroutine
// hand-off; what remains (leases, loads, fills) runs on a goroutine and a
// context of its own (bounded by LoadTimeout, ended by Close), so that a
// caller giving up fails no other caller and no caller waits past its
// context. The caller must not touch b's misses until b is finished.
func (k *Keyspace[V]) run(ctx context.Context, b *batch[V]) {
	k.readRedis(ctx, b)
	if len(b.pending()) == 0 {
		b.finish(k)
		return
	}
	if b.flight != nil && b.misses[0].stale != nil {
		b.flight.stale.Store(b.misses[0].stale)
	}
	started := k.client.spawn(&task{what: "load", keyspace: k.config.Name, id: b.misses[0].id}, func() {
		lctx, cancel := k.client.loadCtx(ctx, k.config.LoadTimeout)
		defer cancel()
		k.fetch(lctx, b)
		b.finish(k)
	})
	if !started {
		for _, m := range b.pending() {
			m.finish(TierRedis, loaded[V]{}, ErrClosed)
		}
		b.finish(k)
	}
}

// fetch takes the batch from its Redis read to the end: leases, waits for
// other processes' fills, loads and fills, until every miss is done.
func (k *Keyspace[V]) fetch(ctx context.Context, b *batch[V]) {
	if len(b.at(stepRead)) > 0 {
		// The caller gave up during its read: read again, for the others.
		k.readRedis(ctx, b)
		for _, m := range b.at(stepRead) {
			m.finish(TierRedis, loaded[V]{}, ctx.Err())
		}
	}
	w := leaseWait{deadline: time.Now().Add(k.config.LeaseWait), backoff: 2 * time.Millisecond}
	k.takeLeases(ctx, b)
	for {
		k.loadAndFill(ctx, b)
		if len(b.at(stepAwait)) == 0 {
			return
		}
		k.awaitHolders(ctx, b, &w)
	}
}

// redisFailed sends ms to the loader without Redis, counting the failure of
// op once.
func (k *Keyspace[V]) redisFailed(ms []*miss[V], op string, err error) {
	key := ms[0].key
	if key == "" {
		key = keys.Key(k.config.Name, ms[0].id)
	}
	k.redisError(op, key, err)
	for _, m := range ms {
		m.step = stepLoadDown
	}
}
