package tiered

import (
	"context"
	"math"
	"math/rand"
)

// The refresh pool runs background refreshes for every keyspace of a
// Client: a fixed number of workers and a bounded queue. A refresh that
// finds the queue full is dropped and counted, never piled up; Close cancels
// the running ones and waits for the workers.

func (c *Client) startRefreshers() {
	c.refreshQ = make(chan func(context.Context), c.opts.RefreshQueue)
	for i := 0; i < c.opts.RefreshWorkers; i++ {
		c.spawn(func() {
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
func xfetch(now, expiry, delta int64, beta, r float64) bool {
	if beta <= 0 || delta <= 0 {
		return false
	}
	if r <= 0 {
		r = math.SmallestNonzeroFloat64
	}
	return float64(now)-float64(delta)*beta*math.Log(r) >= float64(expiry)
}

// refreshFrom is the earliest clock time at which xfetch can fire.
func refreshFrom(expiry, delta int64, beta float64) int64 {
	if beta <= 0 || delta <= 0 {
		return math.MaxInt64
	}
	return expiry - int64(float64(delta)*beta*maxXFetchDraw)
}

func (k *Keyspace[V]) draw() float64 {
	if hk := k.c.hooks; hk != nil && hk.rand != nil {
		return hk.rand()
	}
	return rand.Float64()
}

// maybeRefreshEarly draws for an XFetch refresh of a fresh entry.
func (k *Keyspace[V]) maybeRefreshEarly(id string, h uint64, e *entry[V], now int64) {
	if xfetch(now, e.expiry, e.delta, k.cfg.EarlyRefreshBeta, k.draw()) {
		k.refresh(id, h, true)
	}
}

// refresh schedules one background refresh of id, unless one is already
// queued or running in this process, or another process was found
// refreshing it less than LeaseWait ago.
func (k *Keyspace[V]) refresh(id string, h uint64, early bool) {
	const running = int64(math.MaxInt64)
	if prev, busy := k.refreshing.LoadOrStore(id, running); busy {
		if k.c.clk.Now() < prev.(int64) || !k.refreshing.CompareAndSwap(id, prev, running) {
			return
		}
	}
	ok := k.c.submit(func(ctx context.Context) {
		if k.runRefresh(ctx, id, h, early) {
			// Someone else holds the lease: do not ask again at once.
			k.refreshing.Store(id, k.c.clk.Now()+int64(k.cfg.LeaseWait))
			return
		}
		k.refreshing.Delete(id)
	})
	if !ok {
		k.refreshing.Delete(id)
		k.st.refreshesDropped.Add(1)
	}
}

// runRefresh reloads id under its lease, so that one process refreshes and
// a write racing the load voids the fill (as for a miss). It reports whether
// another process held the lease.
func (k *Keyspace[V]) runRefresh(ctx context.Context, id string, h uint64, early bool) (leaseHeld bool) {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.LoadTimeout)
	defer cancel()
	tok := k.local.Token(h)
	key, ver, err := k.keyOf(ctx, id)
	if err != nil {
		k.redisError("version", id, err)
		return false
	}
	lease := leaseKey(key)
	token := k.c.leaseToken()
	rctx, rcancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	won, err := k.c.store.TryLeases(rctx, []string{lease}, token, k.cfg.LeaseTTL)
	rcancel()
	if err != nil {
		k.redisError("lease", key, err)
		return false
	}
	if !won[0] {
		return true // another process is loading it
	}
	if _, err := k.loadUnderLease(ctx, id, h, key, lease, token, ver, tok, nil); err != nil {
		return false
	}
	if early {
		k.st.earlyRefreshes.Add(1)
	} else {
		k.st.revalidations.Add(1)
	}
	return false
}
