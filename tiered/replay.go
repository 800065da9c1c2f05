package tiered

// The replay queue: invalidations (ids to delete, groups to bump) that
// could not reach Redis, kept per keyspace up to Options.ReplayQueue and
// sent again when Redis is back. On overflow a keyspace's ids are replaced
// by one bump of its epoch: every value of the keyspace becomes
// unreachable, rather than one the application believed deleted staying.

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
)

// replayQueue holds invalidations that could not reach Redis.
type replayQueue struct {
	mu        sync.Mutex
	max       int
	ids       map[string]map[string]struct{} // keyspace -> ids to delete
	groups    map[string]map[string]struct{} // keyspace -> groups to bump
	overflow  map[string]bool                // keyspace -> bump its epoch
	running   bool                           // a replay goroutine is running
	inflight  int                            // items taken by the running replay, not yet sent
	queued    uint64
	replayed  uint64
	overflows uint64
	dropped   uint64 // invalidations Redis refused for good (ACL), not queued
}

// lenLocked is the number of ids and groups waiting.
func (q *replayQueue) lenLocked() int {
	n := 0
	for _, s := range q.ids {
		n += len(s)
	}
	for _, s := range q.groups {
		n += len(s)
	}
	return n
}

func (q *replayQueue) emptyLocked() bool {
	return len(q.ids) == 0 && len(q.groups) == 0 && len(q.overflow) == 0
}

// addLocked queues items of keyspace ks into sets. It reports false when
// they are covered by an epoch bump instead: the keyspace overflowed the
// queue, now or before.
func (q *replayQueue) addLocked(sets *map[string]map[string]struct{}, ks string, items []string) bool {
	if q.overflow[ks] {
		return false // the whole keyspace goes anyway
	}
	if *sets == nil {
		*sets = make(map[string]map[string]struct{})
	}
	set := (*sets)[ks]
	if set == nil {
		set = make(map[string]struct{})
		(*sets)[ks] = set
	}
	n := q.lenLocked()
	for _, it := range items {
		if _, dup := set[it]; dup {
			continue
		}
		if n >= q.max {
			q.overflowLocked(ks)
			return false
		}
		set[it] = struct{}{}
		n++
		q.queued++
	}
	return true
}

func (c *Client) queueKeys(ks string, ids []string, cause error) {
	c.queue(&c.replay.ids, ks, ids, cause)
}

func (c *Client) queueGroup(ks, group string, cause error) {
	c.queue(&c.replay.groups, ks, []string{group}, cause)
}

func (c *Client) queue(sets *map[string]map[string]struct{}, ks string, items []string, cause error) {
	if isPermanent(cause) {
		// Retrying cannot help: say what is wrong, once, and drop them.
		c.refused("publish", cause)
		c.replay.mu.Lock()
		c.replay.dropped += uint64(len(items))
		c.replay.mu.Unlock()
		return
	}
	defer c.scheduleReplay()
	c.replay.mu.Lock()
	defer c.replay.mu.Unlock()
	if c.replay.addLocked(sets, ks, items) {
		c.warn.Warn("invalidation queued until Redis is back", zap.String("keyspace", ks), zap.Error(cause))
	}
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
	delete(q.ids, ks)
	delete(q.groups, ks)
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
	if q.running || q.emptyLocked() || c.closed.Load() {
		q.mu.Unlock()
		return
	}
	q.running = true
	q.mu.Unlock()
	stop := func() {
		q.mu.Lock()
		q.running = false
		q.mu.Unlock()
	}
	started := c.spawn(&task{what: "replay"}, func() {
		if first > 0 && wait(c.ctx, first) != nil {
			stop()
			return
		}
		backoff := 50 * time.Millisecond
		for {
			q.mu.Lock()
			ids, groups, overflow := q.ids, q.groups, q.overflow
			q.inflight = q.lenLocked()
			q.ids, q.groups, q.overflow = nil, nil, nil
			q.mu.Unlock()
			c.replayOnce(ids, groups, overflow)

			q.mu.Lock()
			q.inflight = 0
			if q.emptyLocked() || c.closed.Load() {
				q.running = false
				q.mu.Unlock()
				return
			}
			q.mu.Unlock()
			if wait(c.ctx, backoff) != nil {
				stop()
				return
			}
			// Never wait longer than the breaker would: a replay that lands
			// late leaves peers reading the value it should remove.
			backoff = min(2*backoff, c.options.BreakerOpenFor)
		}
	})
	if !started {
		stop()
	}
}

// replayOnce sends what was taken from the queue; what fails is queued
// again by the writes themselves.
func (c *Client) replayOnce(ids, groups map[string]map[string]struct{}, overflow map[string]bool) {
	ctx, cancel := context.WithTimeout(c.ctx, time.Minute)
	defer cancel()
	names := map[string]bool{}
	for _, m := range []map[string]map[string]struct{}{ids, groups} {
		for ks := range m {
			names[ks] = true
		}
	}
	for ks := range overflow {
		names[ks] = true
	}
	for ks := range names {
		s := c.space(ks)
		if s == nil {
			continue
		}
		n := s.replay(ctx, replayItems{ids: setKeys(ids[ks]), groups: setKeys(groups[ks]), wholeKeyspace: overflow[ks]})
		c.replay.mu.Lock()
		c.replay.replayed += uint64(n)
		c.replay.mu.Unlock()
	}
}

// replayItems is what one keyspace replays.
type replayItems struct {
	ids, groups   []string
	wholeKeyspace bool // bump the epoch
}

func setKeys(set map[string]struct{}) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	return out
}

// replay re-sends invalidations that could not reach Redis and returns how
// many went out. What fails is queued again.
func (k *Keyspace[V]) replay(ctx context.Context, r replayItems) (sent int) {
	if r.wholeKeyspace {
		if err := k.bumpEpoch(ctx); err != nil {
			k.client.queueOverflow(k.config.Name)
			return 0
		}
		k.client.log.Info("replay queue overflowed during a Redis outage; keyspace epoch bumped", zap.String("keyspace", k.config.Name))
	}
	if len(r.ids) > 0 && k.Delete(ctx, r.ids...) == nil {
		sent += len(r.ids)
	}
	for _, g := range r.groups {
		if k.InvalidateGroup(ctx, g) == nil {
			sent++
		}
	}
	return sent
}
