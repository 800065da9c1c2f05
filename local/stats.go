package local

// Stats are counters summed over all shards since New. Each Get counts as
// exactly one Hit or one Miss.
type Stats struct {
	// Hits counts Gets that returned a value.
	Hits uint64
	// Misses counts Gets that returned nothing, including Collisions and
	// Expired.
	Misses uint64
	// Collisions counts Gets that found an item under the same hash but with a
	// different key (a 64-bit hash collision, or a stale hash from the caller).
	Collisions uint64
	// Expired counts Gets that found the item expired and removed it.
	Expired uint64
	// Evictions counts items dropped to make room for another, including
	// items stored and then refused by the admission policy. Items removed
	// by Delete, Purge or expiry, and items replaced under the same hash,
	// are not evictions.
	Evictions uint64
	// Sets counts items stored, by Set, by accepted SetIfUnchanged and by
	// Replace, replacements included.
	Sets uint64
	// Deletes counts items removed by Delete, and by a Replace whose token
	// was stale.
	Deletes uint64
	// Refused counts SetIfUnchanged calls refused because the shard's
	// generation had moved since the token was taken.
	Refused uint64
	// Rejected counts stores not kept because the item alone exceeds
	// Options.MaxBytes (or 4 GiB), or because no room could be made
	// while other stores held it; the key's previous item is removed.
	Rejected uint64
}

// lockedStats are a shard's counters written under its lock; Hits, Misses
// and Collisions are counted by readers, in the shard's read stripes.
type lockedStats struct {
	expired, evictions, sets, deletes, refused, rejected uint64
}

// Stats returns the counters summed over all shards: the readers' counts
// atomically, the others under each shard's lock.
func (c *Cache[T]) Stats() Stats {
	var s Stats
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		l := sh.stats
		sh.mu.Unlock()
		hits, misses, collisions := sh.reads.Load().counts()
		s.Hits += hits
		s.Misses += misses
		s.Collisions += collisions
		s.Expired += l.expired
		s.Evictions += l.evictions
		s.Sets += l.sets
		s.Deletes += l.deletes
		s.Refused += l.refused
		s.Rejected += l.rejected
	}
	return s
}
