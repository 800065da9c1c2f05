package tiered

// Background refreshes: early refresh (XFetch) of hot values before they
// expire, and revalidation of values served stale (stale-while-revalidate);
// one per key per process, under the lease across processes.

import (
	"context"
	"math"
	"math/rand"
	"time"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// The refresh pool runs background refreshes for every keyspace of a
// Client: a fixed number of workers and a bounded queue. A refresh that
// finds the queue full is dropped and counted, never piled up; Close cancels
// the running ones and waits for the workers.

func (c *Client) startRefreshers() {
	c.refreshQ = make(chan func(context.Context), c.options.RefreshQueue)
	for i := 0; i < c.options.RefreshWorkers; i++ {
		c.spawn(&task{what: "refresh worker"}, func() {
			for {
				select {
				case <-c.ctx.Done():
					return
				case job := <-c.refreshQ:
					job(c.ctx)
				}
			}
		})
	}
}

// submit queues job unless the queue is full or the Client closing.
func (c *Client) submit(job func(context.Context)) bool {
	if c.closed.Load() {
		return false
	}
	select {
	case c.refreshQ <- job:
		return true
	default:
		return false
	}
}

// maxXFetchDraw bounds -ln(r) for r = rand.Float64() > 0: the smallest
// positive value it returns is 2^-53, and -ln(2^-53) < 36.8. A hit further
// than delta*beta*maxXFetchDraw from expiry can never draw a refresh, so the
// hit path compares one integer instead of drawing.
const maxXFetchDraw = 36.8

// xfetch is the early-refresh test of Vattani et al.: refresh when
// now - delta*beta*ln(r) >= expiry, r uniform in (0, 1].
func xfetch(now, expiry clock.Time, delta time.Duration, beta, r float64) bool {
	if beta <= 0 || delta <= 0 {
		return false
	}
	if r <= 0 {
		r = math.SmallestNonzeroFloat64
	}
	return float64(now)-float64(delta)*beta*math.Log(r) >= float64(expiry)
}

// refreshFrom is the earliest clock time at which xfetch can fire.
func refreshFrom(expiry clock.Time, delta time.Duration, beta float64) clock.Time {
	if beta <= 0 || delta <= 0 {
		return clock.Never
	}
	return expiry.Add(-time.Duration(float64(delta) * beta * maxXFetchDraw))
}

func (k *Keyspace[V]) draw() float64 {
	if hk := k.client.hooks; hk != nil && hk.rand != nil {
		return hk.rand()
	}
	return rand.Float64()
}

// refresh schedules one background refresh of id, unless one is already
// queued or running in this process, or another process was found
// refreshing it less than LeaseWait ago. It loads with j.loader, what the
// read that asked for it would have loaded with.
func (k *Keyspace[V]) refresh(j refreshJob[V]) {
	id := j.id
	if !j.loader.exists() {
		return // nothing to refresh with
	}
	const running = int64(math.MaxInt64)
	if prev, busy := k.refreshing.LoadOrStore(id, running); busy {
		if int64(k.client.clock.Now()) < prev.(int64) || !k.refreshing.CompareAndSwap(id, prev, running) {
			return
		}
	}
	ok := k.client.submit(func(ctx context.Context) {
		if k.runRefresh(ctx, j) {
			// Someone else holds the lease: do not ask again at once.
			k.refreshing.Store(id, int64(k.client.clock.Now().Add(k.config.LeaseWait)))
			return
		}
		k.refreshing.Delete(id)
	})
	if !ok {
		k.refreshing.Delete(id)
		k.counters.refreshesDropped.Add(1)
	}
}

// refreshJob is one background refresh.
type refreshJob[V any] struct {
	id     string
	hash   uint64
	early  bool // an XFetch draw; else a revalidation of a stale value
	loader loader[V]
}

// runRefresh reloads an id under its lease, so that one process refreshes
// and a write racing the load voids the fill (as for a miss). It reports
// whether another process held the lease.
func (k *Keyspace[V]) runRefresh(ctx context.Context, j refreshJob[V]) (leaseHeld bool) {
	ctx, cancel := context.WithTimeout(ctx, k.config.LoadTimeout)
	defer cancel()
	id, early := j.id, j.early
	m := &miss[V]{id: id, hash: j.hash, gen: k.local.Token(j.hash)}
	b := &batch[V]{misses: []*miss[V]{m}, loader: j.loader, token: k.client.leaseToken()}
	if err := k.resolveKeys(ctx, b.misses); err != nil {
		k.redisError("version", keys.Key(k.config.Name, id), err)
		return false
	}
	won, err := k.client.store.TryLeases(ctx, []string{keys.LeaseKey(m.key)}, remote.LeaseRequest{Token: b.token, TTL: k.config.LeaseTTL})
	if err != nil {
		k.redisError("lease", m.key, err)
		return false
	}
	if !won[0] {
		return true // another process is loading it
	}
	m.step = stepLoadLease
	k.loadAndFill(ctx, b)
	if m.err != nil {
		return false
	}
	if early {
		k.counters.earlyRefreshes.Add(1)
	} else {
		k.counters.revalidations.Add(1)
	}
	return false
}
