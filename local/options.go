package local

import (
	"math/bits"
	"runtime"
)

// Policy selects the eviction policy of each shard.
type Policy int

const (
	// TinyLFU is the default: W-TinyLFU admission in front of a segmented
	// LRU. New items enter a small LRU window (1% of the shard); an item
	// leaving the window is admitted to the main space (an 80% protected and
	// a 20% probation LRU) only if a frequency sketch, which also remembers
	// items no longer held, says it was requested more often than the item
	// it would displace. Frequencies age: every 10 sketch-widths of
	// recorded requests, all counts halve. A one-pass scan of cold keys, or
	// a loop over more keys than fit, then churns the window and leaves the
	// frequently used set alone.
	TinyLFU Policy = iota
	// LRU evicts the least recently used item of the shard, with no
	// admission filter.
	LRU
	// TwoQueue used to select golang-lru's 2Q.
	//
	// Deprecated: it now selects TinyLFU, which is scan resistant too and
	// has a higher hit ratio (see bench/README.md); it will be removed.
	TwoQueue = TinyLFU
)

const (
	defaultCapacity = 10_000
	// minPerShard is the smallest per-shard capacity the default shard count
	// accepts: below it, sharding buys little write concurrency and makes
	// per-shard policy order a poor approximation of a global one.
	minPerShard = 64
	// maxShards bounds a caller's Shards so a bad option cannot allocate
	// unbounded memory.
	maxShards = 1 << 16
)

// Options configures a Cache. The zero value is usable; New applies the
// defaults below in one place (Options.withDefaults).
type Options struct {
	// Capacity is the maximum number of items in the cache; default 10_000
	// when <= 0. It bounds the whole cache, not each shard: a shard may
	// hold more than Capacity/Shards while others hold less, so a working
	// set of Capacity keys fits however its hashes fall on the shards.
	Capacity int
	// MaxBytes, when > 0, also bounds the bytes the items are charged:
	// each item counts its Entry.Size plus Overhead() bytes, and the sum
	// never exceeds MaxBytes. An item that alone exceeds it (or 4 GiB) is
	// not stored. Default 0: no byte bound.
	MaxBytes int64
	// Shards is the number of shards, each with its own write lock and
	// policy, rounded up to a power of two (at most 65536, and at most
	// Capacity so that every shard holds an item). When <= 0 the default
	// is the next power of two >= 4*runtime.GOMAXPROCS(0), halved while
	// Capacity/Shards < 64, so a tiny cache has a single shard. Reads take
	// no lock, so shards only spread writes and policy upkeep.
	Shards int
	// Policy is the eviction policy of every shard; default TinyLFU. An
	// unknown value means TinyLFU.
	Policy Policy
}

// withDefaults returns o with every default applied and Shards resolved.
func (o Options) withDefaults() Options {
	if o.Capacity <= 0 {
		o.Capacity = defaultCapacity
	}
	if o.MaxBytes < 0 {
		o.MaxBytes = 0
	}
	if o.Policy != LRU {
		o.Policy = TinyLFU
	}
	o.Shards = shardCount(o.Capacity, o.Shards)
	return o
}

// shardCount applies the rules documented on Options.Shards.
func shardCount(capacity, want int) int {
	n := want
	if n <= 0 {
		n = 4 * runtime.GOMAXPROCS(0)
	}
	n = min(n, maxShards)
	n = 1 << bits.Len(uint(n-1)) // round up to a power of two
	for n > 1 && (n > capacity || (want <= 0 && capacity/n < minPerShard)) {
		n /= 2
	}
	return n
}
