package tiered

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/breaker"
)

// Degradation: a circuit breaker per Client guards every Redis call (see
// remote.Guard). While it is open, calls fail at once (no timeout per
// request), reads go to the Loader, and writes queue their invalidations in
// a bounded replay queue. When it closes again (or the bus resubscribes),
// the local tiers flush and the queue is replayed; if it overflowed, the
// affected keyspaces' epochs are bumped instead, so no key keeps a value the
// application believed deleted.

func (c *Client) newBreaker() *breaker.Breaker {
	return breaker.New(breaker.Options{
		ConsecutiveFailures: c.opts.BreakerFailures,
		OpenFor:             c.opts.BreakerOpenFor,
		OnChange: func(from, to breaker.State) {
			switch to {
			case breaker.Open:
				c.log.Warn("Redis unavailable: circuit breaker open; reads go to the loaders", zap.Stringer("from", from))
			case breaker.Closed:
				c.log.Info("Redis available again: circuit breaker closed; flushing local tiers and replaying queued invalidations")
				c.recovered()
			}
		},
	})
}

// replayQueue holds invalidations that could not reach Redis.
type replayQueue struct {
	mu        sync.Mutex
	max       int
	n         int
	ids       map[string]map[string]struct{} // keyspace -> ids to delete
	groups    map[string]map[string]struct{} // keyspace -> groups to bump
	overflow  map[string]bool                // keyspace -> bump its epoch
	running   bool
	inflight  int // items taken by the running replay, not yet sent
	queued    uint64
	replayed  uint64
	overflows uint64
}

func (c *Client) queueKeys(ks string, ids []string, cause error) {
	defer c.scheduleReplay()
	q := &c.replay
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow[ks] {
		return // the whole keyspace goes anyway
	}
	if q.ids == nil {
		q.ids = make(map[string]map[string]struct{})
	}
	set := q.ids[ks]
	if set == nil {
		set = make(map[string]struct{})
		q.ids[ks] = set
	}
	for _, id := range ids {
		if _, dup := set[id]; dup {
			continue
		}
		if q.n >= q.max {
			q.overflowLocked(ks)
			return
		}
		set[id] = struct{}{}
		q.n++
		q.queued++
	}
	c.warn.Warn("invalidation queued until Redis is back", zap.String("keyspace", ks), zap.Error(cause))
}

func (c *Client) queueGroup(ks, group string, cause error) {
	defer c.scheduleReplay()
	q := &c.replay
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.overflow[ks] {
		return
	}
	if q.groups == nil {
		q.groups = make(map[string]map[string]struct{})
	}
	set := q.groups[ks]
	if set == nil {
		set = make(map[string]struct{})
		q.groups[ks] = set
	}
	if _, dup := set[group]; dup {
		return
	}
	if q.n >= q.max {
		q.overflowLocked(ks)
		return
	}
	set[group] = struct{}{}
	q.n++
	q.queued++
	c.warn.Warn("group invalidation queued until Redis is back", zap.String("keyspace", ks), zap.Error(cause))
}

func (c *Client) queueOverflow(ks string) {
	defer c.scheduleReplay()
	c.replay.mu.Lock()
	defer c.replay.mu.Unlock()
	c.replay.overflowLocked(ks)
}

// overflowLocked replaces a keyspace's queued ids by one epoch bump.
func (q *replayQueue) overflowLocked(ks string) {
	if q.overflow == nil {
		q.overflow = make(map[string]bool)
	}
	if !q.overflow[ks] {
		q.overflows++
	}
	q.overflow[ks] = true
	q.n -= len(q.ids[ks]) + len(q.groups[ks])
	delete(q.ids, ks)
	delete(q.groups, ks)
}

// recovered runs when Redis is reachable again: local tiers may hold values
// loaded while invalidations could not flow, and queued invalidations must
// go out.
func (c *Client) recovered() {
	c.resetAll()
	c.startReplay()
}

func (c *Client) resetAll() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, s := range c.spaces {
		s.reset()
	}
	c.flushes.Add(1)
}

// scheduleReplay starts a replay that first waits a little: Redis has just
// failed a write, and a blip (a pause, one timeout) may leave neither a
// breaker transition nor a resubscription behind to start one.
func (c *Client) scheduleReplay() { c.replayAfter(replayFirstWait) }

// replayFirstWait is how long a replay started by a failed write waits
// before its first attempt.
const replayFirstWait = 100 * time.Millisecond

// startReplay replays the queue at once (Redis is known to be back).
func (c *Client) startReplay() { c.replayAfter(0) }

// replayAfter replays the queue in the background, one replay at a time.
// What fails goes back into the queue, and the replay tries again with a
// backoff (its calls are also what probes an open breaker) until the queue
// is empty or the Client closes.
func (c *Client) replayAfter(first time.Duration) {
	q := &c.replay
	q.mu.Lock()
	if q.running || q.n == 0 && len(q.overflow) == 0 || c.closed.Load() {
		q.mu.Unlock()
		return
	}
	q.running = true
	q.mu.Unlock()

	started := c.spawn(func() {
		if first > 0 && wait(c.ctx, first) != nil {
			q.mu.Lock()
			q.running = false
			q.mu.Unlock()
			return
		}
		backoff := 50 * time.Millisecond
		for {
			q.mu.Lock()
			ids, groups, overflow := q.ids, q.groups, q.overflow
			q.ids, q.groups, q.overflow, q.inflight, q.n = nil, nil, nil, q.n, 0
			q.mu.Unlock()
			c.replayOnce(ids, groups, overflow)

			q.mu.Lock()
			q.inflight = 0
			if q.n == 0 && len(q.overflow) == 0 || c.closed.Load() {
				q.running = false
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			if wait(c.ctx, backoff) != nil {
				q.mu.Lock()
				q.running = false
				q.mu.Unlock()
				return
			}
			// Never wait longer than the breaker would: a replay that lands
			// late leaves peers reading the value it should remove.
			backoff = min(2*backoff, c.opts.BreakerOpenFor)
		}
	})
	if !started {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}
}

func (c *Client) replayOnce(ids, groups map[string]map[string]struct{}, overflow map[string]bool) {
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	names := map[string]bool{}
	for ks := range ids {
		names[ks] = true
	}
	for ks := range groups {
		names[ks] = true
	}
	for ks := range overflow {
		names[ks] = true
	}
	for ks := range names {
		s := c.space(ks)
		if s == nil {
			continue
		}
		var is, gs []string
		for id := range ids[ks] {
			is = append(is, id)
		}
		for g := range groups[ks] {
			gs = append(gs, g)
		}
		n := s.replay(ctx, is, gs, overflow[ks])
		c.replay.mu.Lock()
		c.replay.replayed += uint64(n)
		c.replay.mu.Unlock()
	}
}
