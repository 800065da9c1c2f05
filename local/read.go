package local

// Get returns the value stored for (h, key) if the stored item's key is key
// and now < its expiry. An item under h with another key is a collision and a
// miss (the item stays: it is valid for its own key). An expired item is
// removed. A hit takes no lock and does not allocate.
func (c *Cache[T]) Get(h uint64, key string, now int64) (T, bool) {
	if p := c.Ref(h, key, now); p != nil {
		return *p, true
	}
	var zero T
	return zero, false
}

// Ref is Get without the copy: it returns a pointer to the stored value, or
// nil. Stored values are never modified in place (an overwrite stores a new
// item), so the pointer stays valid and unchanged however the cache changes
// afterwards; the caller must not modify what it points to. For large
// values this saves copying them out of the cache and again to the caller.
//
// A hit reads the index with atomic loads, compares the full key, checks
// the expiry, and records the access in a lossy read buffer of the shard:
// no lock, no allocation, and no write to memory shared with other cores
// (except, every 16 hits of a buffer, a TryLock of the shard to drain it).
func (c *Cache[T]) Ref(h uint64, key string, now int64) *T {
	p, _ := c.RefTick(h, key, now)
	return p
}

// TickEvery is how many hits of a read stripe there are for each tick
// RefTick reports.
const TickEvery = 64

// RefTick is Ref that also reports, for about one hit in TickEvery (every
// TickEvery-th hit of the reader's stripe), a tick: a sampling decision that
// costs the hit path nothing, since the stripe counts its hits anyway and
// is seldom shared with another core.
func (c *Cache[T]) RefTick(h uint64, key string, now int64) (*T, bool) {
	sh := c.shard(h)
	n := sh.index.find(h)
	if n != nil && n.key == key && now < n.expire {
		drain, hits := sh.reads.Load().mine().record(n)
		if drain {
			c.tryDrain(sh)
		}
		return &n.val, hits%TickEvery == 0
	}
	c.miss(sh, n, key)
	return nil, false
}

// miss counts a Get that found nothing, another key, or an expired item n,
// and removes n in the last case.
func (c *Cache[T]) miss(sh *shard[T], n *node[T], key string) {
	st := sh.reads.Load().mine()
	st.misses.Add(1)
	switch {
	case n == nil:
	case n.key != key:
		st.collisions.Add(1)
	default:
		sh.mu.Lock()
		if c.remove(sh, n) {
			sh.stats.expired++
		}
		sh.mu.Unlock()
	}
}

// tryDrain drains the shard's read buffers if no one holds its lock; if
// someone does, the buffers keep filling (and overwriting) until a later
// hit or write drains them.
func (c *Cache[T]) tryDrain(sh *shard[T]) {
	if sh.mu.TryLock() {
		sh.drainReads()
		sh.mu.Unlock()
	}
}

// drainReads replays the recorded hits into the policy, and adds stripes
// if readers contended for them. Under the shard lock.
func (sh *shard[T]) drainReads() {
	rs := sh.reads.Load()
	for _, st := range rs.s {
		if st.hits.Load() != st.drained {
			st.drain(&sh.policy)
		}
	}
	if next := rs.grown(); next != nil {
		sh.reads.Store(next)
	}
}

// Peek is Ref that leaves no trace: no recency recorded, no hit or miss
// counted, nothing removed. For a look that is not a read of the cache (a
// verifier's, say).
func (c *Cache[T]) Peek(h uint64, key string, now int64) *T {
	n := c.shard(h).index.find(h)
	if n != nil && n.key == key && now < n.expire {
		return &n.val
	}
	return nil
}
