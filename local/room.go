package local

import "sync/atomic"

// The cache's bounds (Capacity items, MaxBytes bytes) hold for the whole
// cache, not per shard: a budget counts what all shards hold, and a store
// reserves its item in the budget before inserting it, so the totals never
// exceed the bounds, not even for a moment. Each shard has a share of the
// bounds (bound/Shards), which only decides where room is made: a store in
// a full cache evicts from its own shard if that shard holds its share or
// more, and otherwise from a shard over its share. Keys never split evenly
// over shards, and a fixed per-shard capacity would evict from the fuller
// shards while others had room: a working set of exactly Capacity keys
// would not fit.

// budget counts the items and charged bytes of all shards.
type budget struct {
	entries    atomic.Int64
	bytes      atomic.Int64 // kept only when maxBytes > 0
	cursor     atomic.Uint32
	maxEntries int64
	maxBytes   int64
}

// take reserves n items and b bytes (negative values release) and reports
// whether both fit. Reservations go first, releases last, so that a failed
// take never gives back room that others may have taken since.
func (bg *budget) take(n, b int64) bool {
	if n > 0 && !reserve(&bg.entries, n, bg.maxEntries) {
		return false
	}
	if bg.maxBytes > 0 && b > 0 && !reserve(&bg.bytes, b, bg.maxBytes) {
		if n > 0 {
			bg.entries.Add(-n)
		}
		return false
	}
	if n < 0 {
		bg.entries.Add(n)
	}
	if bg.maxBytes > 0 && b < 0 {
		bg.bytes.Add(b)
	}
	return true
}

func (bg *budget) release(n, b int64) {
	if n != 0 || b != 0 {
		bg.take(-n, -b)
	}
}

func reserve(v *atomic.Int64, d, limit int64) bool {
	for {
		cur := v.Load()
		if cur+d > limit {
			return false
		}
		if v.CompareAndSwap(cur, cur+d) {
			return true
		}
	}
}

// makeRoom reserves the budget r's item needs, evicting from sh (under its
// lock) while the cache is full and sh owes the room (or r.force). The
// budget of items it evicts goes to r's item directly, so a full cache
// that evicts one to store one never touches the shared counters. It
// reports false, having evicted nothing it keeps, when the room must come
// from elsewhere.
func (c *Cache[T]) makeRoom(sh *shard[T], r *storeRequest[T]) bool {
	var freed, freedBytes int64
	for {
		n, b := int64(1), r.cost
		old := sh.index.find(r.h)
		if old != nil {
			n, b = 0, r.cost-int64(old.cost)
		}
		if c.budget.take(n-freed, b-freedBytes) {
			return true
		}
		if !r.force && !c.owesRoom(sh, r.cost) {
			break
		}
		v := sh.policy.victim()
		if v == nil {
			break
		}
		c.detach(sh, v)
		if v != old { // old would have been replaced anyway
			sh.stats.evictions++
		}
		freed++
		freedBytes += int64(v.cost)
	}
	c.budget.release(freed, freedBytes)
	return false
}

// owesRoom reports whether sh, about to take an item of cost bytes, holds
// its share of the cache or more.
func (c *Cache[T]) owesRoom(sh *shard[T], cost int64) bool {
	return sh.count.Load() >= c.shareEntries || (c.maxBytes > 0 && sh.bytes.Load()+cost > c.shareBytes)
}

// overShare reports whether sh holds more than its share.
func (c *Cache[T]) overShare(sh *shard[T]) bool {
	return sh.count.Load() > c.shareEntries || (c.maxBytes > 0 && sh.bytes.Load() > c.shareBytes)
}

// evictElsewhere evicts one item from a shard other than own that holds
// more than its share, and reports whether it found one. The caller holds
// no shard lock.
func (c *Cache[T]) evictElsewhere(own *shard[T]) bool {
	n := len(c.shards)
	start := int(c.budget.cursor.Add(1))
	for i := range n {
		sh := &c.shards[(start+i)&(n-1)]
		if sh == own || !c.overShare(sh) {
			continue
		}
		sh.mu.Lock()
		evicted := false
		if c.overShare(sh) {
			sh.drainReads()
			if v := sh.policy.victim(); v != nil {
				c.remove(sh, v)
				sh.stats.evictions++
				evicted = true
			}
		}
		sh.mu.Unlock()
		if evicted {
			return true
		}
	}
	return false
}

// removeKey removes the item under h if its key is key.
func (c *Cache[T]) removeKey(sh *shard[T], h uint64, key string) bool {
	if n := sh.index.find(h); n != nil && n.key == key {
		return c.remove(sh, n)
	}
	return false
}

// remove removes n, if still stored, and returns its budget.
func (c *Cache[T]) remove(sh *shard[T], n *node[T]) bool {
	if !c.detach(sh, n) {
		return false
	}
	c.budget.release(1, int64(n.cost))
	return true
}

// detach takes n out of the index and the policy, keeping its budget.
func (c *Cache[T]) detach(sh *shard[T], n *node[T]) bool {
	if !sh.index.remove(n) {
		return false
	}
	sh.policy.remove(n)
	sh.count.Add(-1)
	sh.bytes.Add(-int64(n.cost))
	return true
}
