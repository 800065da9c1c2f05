package local

import "math"

// Entry is one item to store.
type Entry[T any] struct {
	// Key is the full key; a Get of another key under the same hash misses.
	Key string
	// Value is stored by copy and never modified afterwards.
	Value T
	// Expire is the caller's clock reading from which Get no longer returns
	// the item (served while now < Expire).
	Expire int64
	// Size is the value's size in bytes (tiercache: its encoded size),
	// charged against Options.MaxBytes together with Overhead(). Negative
	// means 0.
	Size int64
}

// storeMode is what a store checks and bumps.
type storeMode uint8

const (
	storeFill    storeMode = iota // SetIfUnchanged
	storeSet                      // Set
	storeReplace                  // Replace
)

// maxStoreAttempts bounds how often a store gives up its shard lock to make
// room in other shards before it makes room in its own regardless.
const maxStoreAttempts = 4

// SetIfUnchanged stores e under h only if no Set, Replace, Delete or Purge
// touched h's shard since tok was taken by Token. It reports whether it
// stored. Storing does not bump the generation, so concurrent fills of
// other keys in the shard are not refused.
func (c *Cache[T]) SetIfUnchanged(h uint64, e Entry[T], tok uint64) bool {
	return c.store(h, &e, storeFill, tok)
}

// Set stores e under h unconditionally, and bumps the shard's generation so
// that fills which started before it are refused. It reports whether it
// stored (false only for an item rejected as in Stats.Rejected, in which
// case e.Key's previous item is removed).
func (c *Cache[T]) Set(h uint64, e Entry[T]) bool {
	return c.store(h, &e, storeSet, 0)
}

// Replace is the local step of a write-through. If no Set, Replace, Delete
// or Purge touched h's shard since tok was taken, it stores e; otherwise a
// concurrent write may be newer than this one, so it removes e.Key's item
// instead. Either way it bumps the generation, so fills that read the old
// value before the write are refused. It reports whether it stored.
func (c *Cache[T]) Replace(h uint64, e Entry[T], tok uint64) bool {
	return c.store(h, &e, storeReplace, tok)
}

// storeRequest is one store as it travels through its attempts.
type storeRequest[T any] struct {
	h     uint64
	e     *Entry[T]
	cost  int64 // charged bytes
	fits  bool  // false: larger than MaxBytes (or 4 GiB) alone
	mode  storeMode
	tok   uint64
	force bool // make room in the own shard even if under its share
}

// store is Set, SetIfUnchanged and Replace. When the cache is full, it
// evicts from its own shard if that shard holds its share or more, and
// otherwise from a shard over its share, taking one lock at a time.
func (c *Cache[T]) store(h uint64, e *Entry[T], mode storeMode, tok uint64) bool {
	r := storeRequest[T]{h: h, e: e, mode: mode, tok: tok}
	r.cost, r.fits = c.charge(e.Size)
	sh := c.shard(h)
	for attempt := 1; ; attempt++ {
		sh.mu.Lock()
		sh.drainReads()
		stored, done := c.storeLocked(sh, &r)
		if done {
			if mode != storeFill {
				sh.gen.Add(1)
			}
			sh.mu.Unlock()
			return stored
		}
		sh.mu.Unlock()
		r.force = !c.evictElsewhere(sh) || attempt == maxStoreAttempts
	}
}

// storeLocked is one attempt of store under sh's lock. done is false when
// room must be made in another shard first.
func (c *Cache[T]) storeLocked(sh *shard[T], r *storeRequest[T]) (stored, done bool) {
	switch {
	case r.mode == storeFill && sh.gen.Load() != r.tok:
		sh.stats.refused++
		return false, true
	case r.mode == storeReplace && sh.gen.Load() != r.tok:
		if c.removeKey(sh, r.h, r.e.Key) {
			sh.stats.deletes++
		}
		return false, true
	case !r.fits:
		c.removeKey(sh, r.h, r.e.Key)
		sh.stats.rejected++
		return false, true
	}
	if !c.makeRoom(sh, r) {
		if !r.force {
			return false, false
		}
		c.removeKey(sh, r.h, r.e.Key)
		sh.stats.rejected++
		return false, true
	}
	n := &node[T]{key: r.e.Key, val: r.e.Value, expire: r.e.Expire, hash: r.h, cost: uint32(r.cost)}
	if old := sh.index.put(n); old != nil {
		sh.policy.replace(old, n)
		sh.bytes.Add(r.cost - int64(old.cost))
	} else {
		sh.bytes.Add(r.cost)
		sh.policy.add(n, int(sh.count.Add(1)))
	}
	sh.stats.sets++
	return true, true
}

// charge returns the bytes an item of size is charged, and whether it can
// be stored at all.
func (c *Cache[T]) charge(size int64) (cost int64, fits bool) {
	size = max(size, 0)
	limit := int64(math.MaxUint32)
	if c.maxBytes > 0 {
		limit = min(limit, c.maxBytes)
	}
	if size > limit-c.overhead {
		return limit, c.maxBytes == 0 // unbounded: stored, its count clamped
	}
	return size + c.overhead, true
}

// Delete removes the item under h if its key is key (an item of a colliding
// key is left alone) and reports whether it removed one. It bumps the shard's
// generation even when nothing was removed, because a fill of key may be in
// flight.
func (c *Cache[T]) Delete(h uint64, key string) bool {
	sh := c.shard(h)
	sh.mu.Lock()
	sh.gen.Add(1)
	removed := c.removeKey(sh, h, key)
	if removed {
		sh.stats.deletes++
	}
	sh.mu.Unlock()
	return removed
}

// Purge removes every item and bumps every shard's generation. Shards are
// cleared one at a time: a concurrent Get may still hit in a shard that Purge
// has not reached yet.
func (c *Cache[T]) Purge() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.policy.clear()
		sh.index.reset()
		sh.reads.Load().forget()
		c.budget.release(sh.count.Swap(0), sh.bytes.Swap(0))
		sh.gen.Add(1)
		sh.mu.Unlock()
	}
}
