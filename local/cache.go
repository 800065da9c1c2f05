package local

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

const (
	// mix is 2^64 divided by the golden ratio (Fibonacci hashing): the shard
	// index is the top bits of h*mix, which depend on every bit of h, so a
	// caller's hash with weak low or high bits still spreads over the shards.
	mix = 0x9E3779B97F4A7C15

	// cacheLine is the padding unit between data written by different
	// cores: 128 rather than 64 bytes because x86 prefetches cache lines in
	// adjacent pairs.
	cacheLine = 128

	// indexOverhead is the index's share of an item's charged bytes: 9
	// bytes a slot (a pointer and a tag byte) at an average load of 0.6.
	indexOverhead = 16
)

// Cache maps a 64-bit key hash, computed by the caller (xxhash64 of the key in
// tiercache), to an item {key, value, expiry, size}. Only one item is stored
// per hash: storing key B under the hash of key A replaces A, and a later Get
// of A is a miss (counted in Collisions). All methods are safe for
// concurrent use; Get and Ref take no lock.
type Cache[T any] struct {
	// Read by every call.
	shards       []shard[T]
	shift        uint  // 64 - log2(len(shards))
	maxBytes     int64 // 0: no byte bound
	overhead     int64
	shareEntries int64 // Capacity/Shards, rounded up
	shareBytes   int64 // MaxBytes/Shards, rounded up
	_            [cacheLine]byte
	// Written by stores that change the number of items.
	budget budget
	_      [cacheLine]byte
}

// shardState is the part of a shard written under its lock, kept off the
// cache line that readers load.
type shardState[T any] struct {
	mu sync.Mutex
	// gen is the invalidation generation. It is bumped only under mu, but
	// Token reads it without mu (atomically): a token read just before a
	// bump is simply refused by the comparison under mu in SetIfUnchanged.
	gen    atomic.Uint64
	count  atomic.Int64 // items; read without mu by other shards' stores
	bytes  atomic.Int64 // their charged bytes
	policy policy[T]
	stats  lockedStats
}

type shard[T any] struct {
	// Read by every Ref; written only when a table or stripe set is
	// replaced.
	index index[T]
	reads atomic.Pointer[stripes[T]]
	_     [cacheLine - 16]byte
	shardState[T]
	// Never zero bytes: a zero-size last field makes Go pad the struct.
	_ [cacheLine - unsafe.Sizeof(shardState[int]{})%cacheLine]byte
}

// New returns an empty cache configured by o.
func New[T any](o Options) *Cache[T] {
	o = o.withDefaults()
	n := o.Shards
	c := &Cache[T]{
		shards:       make([]shard[T], n),
		shift:        uint(64 - bits.TrailingZeros64(uint64(n))),
		maxBytes:     o.MaxBytes,
		overhead:     int64(unsafe.Sizeof(node[T]{})) + indexOverhead,
		shareEntries: int64((o.Capacity + n - 1) / n),
		shareBytes:   (o.MaxBytes + int64(n) - 1) / int64(n),
		budget:       budget{maxEntries: int64(o.Capacity), maxBytes: o.MaxBytes},
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.index.reset()
		sh.reads.Store(newStripes[T]())
		sh.policy.init(o.Policy, int(c.shareEntries), uint64(i+1)*mix)
	}
	return c
}

func (c *Cache[T]) shard(h uint64) *shard[T] {
	// A shift of 64 (one shard) yields 0 in Go.
	return &c.shards[(h*mix)>>c.shift]
}

// Token returns the current invalidation generation of h's shard. Take it
// before starting to read a value from a slower tier, and pass it to
// SetIfUnchanged or Replace.
func (c *Cache[T]) Token(h uint64) uint64 {
	return c.shard(h).gen.Load()
}

// Len returns the number of items stored, expired ones included until a Get
// finds them, and a store in progress counted from the moment it reserved
// its room. It never exceeds Options.Capacity.
func (c *Cache[T]) Len() int { return int(c.budget.entries.Load()) }

// Bytes returns the bytes the stored items are charged: the sum of their
// Entry.Size plus Overhead() each. With Options.MaxBytes set it counts, as
// Len does, stores in progress, and never exceeds MaxBytes; without, it is
// a sum over the shards read one after the other.
func (c *Cache[T]) Bytes() int64 {
	if c.maxBytes > 0 {
		return c.budget.bytes.Load()
	}
	n := int64(0)
	for i := range c.shards {
		n += c.shards[i].bytes.Load()
	}
	return n
}

// Overhead returns the bytes each item is charged beyond its Entry.Size:
// the size of the node that holds it (the key's string header, the value
// of type T, the expiry, and the policy's links) plus its share of the
// index. Bytes a value or key points to are not included: count them in
// Size. For a 72-byte T it is 144.
func (c *Cache[T]) Overhead() int64 { return c.overhead }

// Shards returns the number of shards.
func (c *Cache[T]) Shards() int { return len(c.shards) }
