package tiered

// Leases across processes (Facebook's memcache): a miss in Redis takes the
// key's lease in the same script that reads the value, so one process loads
// while the others wait for its fill, bounded by LeaseWait; then they serve
// the stale value the holder left in Redis, if any, and only then load for
// themselves and cache nothing.

import (
	"context"
	"time"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// takeLeases asks Redis, in one round trip, for the value or the lease of
// every miss at stepLease or stepAwait: a value filled meanwhile is done,
// a won lease goes to the load, a lease held elsewhere to the wait.
func (k *Keyspace[V]) takeLeases(ctx context.Context, b *batch[V]) {
	ms := b.at(stepLease, stepAwait)
	if len(ms) == 0 {
		return
	}
	if b.token == "" {
		b.token = k.client.leaseToken()
	}
	ls := make([]remote.Lease, len(ms))
	for i, m := range ms {
		ls[i] = remote.Lease{Key: m.key, Lease: keys.LeaseKey(m.key)}
	}
	req := remote.LeaseRequest{Token: b.token, TTL: k.config.LeaseTTL}
	rs, err := k.client.store.GetOrLease(ctx, ls, req)
	if err != nil {
		k.redisFailed(ms, "lease", err)
		return
	}
	for i, r := range rs {
		k.leaseOutcome(ms[i], r)
	}
}

// leaseOutcome moves a miss on after its lease request.
func (k *Keyspace[V]) leaseOutcome(m *miss[V], r remote.LeaseResult) {
	waited := m.step == stepAwait
	switch r.State {
	case remote.Found:
		v, err := k.decode(m, r.Value)
		if err != nil {
			m.step = stepLoadOver
			return
		}
		if waited {
			k.counters.leaseWaits.Add(1)
			m.outcome.lease = LeaseWaited
		}
		k.fillLocal(m, v)
		m.finish(TierRedis, v.loaded, nil)
	case remote.Won:
		k.counters.leasesWon.Add(1)
		m.outcome.lease = LeaseWon
		m.step = stepLoadLease
		if m.stale == nil && r.Value != nil && k.config.StaleIfError > 0 {
			// A read that took the lease at once: what StaleIfError may
			// serve if the load fails is the stale value it found.
			if v, err := k.decode(m, r.Value); err == nil && !v.negative && k.client.clock.Precise() < v.expiry.Add(k.config.StaleIfError) {
				m.stale = &v.loaded
			}
		}
	default:
		if !waited {
			k.counters.leasesLost.Add(1)
		}
		m.held = r.Value
		m.step = stepAwait
	}
}

// leaseWait is how long a batch still waits for other processes' fills, and
// its next pause.
type leaseWait struct {
	deadline time.Time
	backoff  time.Duration
}

// awaitHolders waits one pause (2ms doubling to 25ms) and asks again for the
// misses at stepAwait; once LeaseWait has run out, it gives up on them.
func (k *Keyspace[V]) awaitHolders(ctx context.Context, b *batch[V], w *leaseWait) {
	if !time.Now().Add(w.backoff).Before(w.deadline) {
		for _, m := range b.at(stepAwait) {
			k.leaseWaitOver(m)
		}
		return
	}
	if err := wait(ctx, w.backoff); err != nil {
		for _, m := range b.at(stepAwait) {
			m.finish(TierRedis, loaded[V]{}, err)
		}
		return
	}
	w.backoff = min(2*w.backoff, 25*time.Millisecond)
	k.takeLeases(ctx, b)
}

// leaseWaitOver serves the stale value the holder left in Redis, if there
// is one; otherwise the miss is loaded here and cached nowhere.
func (k *Keyspace[V]) leaseWaitOver(m *miss[V]) {
	k.counters.leaseTimeouts.Add(1)
	m.outcome.lease = LeaseTimeout
	if m.held != nil {
		if v, err := k.decode(m, m.held); err == nil && !v.negative {
			k.counters.staleServed.Add(1)
			m.finish(TierStale, v.loaded, nil)
			return
		}
	}
	m.step = stepLoadAlone
}

// releaseLeases gives back the leases of misses whose load is not to be
// cached, so that other processes need not wait for them to expire.
func (k *Keyspace[V]) releaseLeases(ctx context.Context, token string, ms []*miss[V]) {
	if len(ms) == 0 {
		return
	}
	leases := make([]string, len(ms))
	for i, m := range ms {
		leases[i] = keys.LeaseKey(m.key)
	}
	if err := k.client.store.ReleaseLeases(context.WithoutCancel(ctx), leases, token); err != nil {
		k.redisError("release lease", leases[0], err)
	}
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
