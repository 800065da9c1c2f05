package local

import (
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Policy selects the eviction policy of each shard.
type Policy int

const (
	// LRU evicts the least recently used item of the shard
	// (a golang-lru/v2 simplelru.LRU per shard).
	LRU Policy = iota
	// TwoQueue is the scan-resistant 2Q policy of golang-lru/v2's 2q.go, without
	// its lock: items seen once live in a "recent" list (25% of the shard),
	// items seen again move to a "frequent" list, and the hashes of items
	// recently evicted from "recent" are remembered in a ghost list (50% of the
	// shard) so that their next store goes straight to "frequent". A one-pass
	// scan of cold keys then only churns "recent" and leaves the hot set alone.
	//
	// Promotion from "recent" to "frequent" moves the item between two
	// simplelru lists, which allocates one list node: the first hit after a
	// store allocates, later hits do not.
	TwoQueue
)

const (
	defaultCapacity = 10_000
	// minPerShard is the smallest per-shard capacity the default shard count
	// accepts: below it, sharding buys little contention relief and makes
	// per-shard LRU order a poor approximation of global LRU order.
	minPerShard = 64
	// maxShards bounds a caller's Shards so a bad option cannot allocate
	// unbounded memory.
	maxShards = 1 << 16

	recentRatio = 0.25 // golang-lru's Default2QRecentRatio
	ghostRatio  = 0.50 // golang-lru's Default2QGhostEntries

	// mix is 2^64 divided by the golden ratio (Fibonacci hashing): the shard
	// index is the top bits of h*mix, which depend on every bit of h, so a
	// caller's hash with weak low or high bits still spreads over the shards.
	// The shard's map hashes the full h again, so reusing h's bits is harmless.
	mix = 0x9E3779B97F4A7C15

	// cacheLine is the padding unit between shards: 128 rather than 64 bytes
	// because x86 prefetches cache lines in adjacent pairs.
	cacheLine = 128
)

// Options configures a Cache. The zero value is usable.
type Options struct {
	// Capacity is the maximum number of items across all shards; default
	// 10_000 when <= 0. Each shard holds Capacity/Shards items (the remainder
	// spread over the first shards), so the total never exceeds Capacity, but
	// one shard can evict while another still has room.
	Capacity int
	// Shards is the number of shards, rounded up to a power of two (at most
	// 65536, and at most Capacity so that every shard holds an item).
	// When <= 0 the default is the next power of two >= 4*runtime.GOMAXPROCS(0),
	// halved while Capacity/Shards < 64, so a tiny cache has a single shard.
	Shards int
	// Policy is the eviction policy of every shard; default LRU. An unknown
	// value means LRU.
	Policy Policy
}

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
	// Evictions counts items dropped to make room for another. Items removed
	// by Delete, Purge or expiry, and items replaced under the same hash, are
	// not evictions.
	Evictions uint64
	// Sets counts items stored, by Set and by accepted SetIfUnchanged,
	// replacements included.
	Sets uint64
	// Deletes counts Delete calls that removed an item.
	Deletes uint64
	// Refused counts SetIfUnchanged calls refused because the shard's
	// generation had moved since the token was taken.
	Refused uint64
}

func (s *Stats) add(o *Stats) {
	s.Hits += o.Hits
	s.Misses += o.Misses
	s.Collisions += o.Collisions
	s.Expired += o.Expired
	s.Evictions += o.Evictions
	s.Sets += o.Sets
	s.Deletes += o.Deletes
	s.Refused += o.Refused
}

// item is what a shard stores under a hash. It is immutable once stored: an
// overwrite stores a new item. That is what lets Ref hand out a pointer to
// the value that stays valid after the shard lock is released.
type item[T any] struct {
	key    string
	val    T
	expire int64
}

// store is one shard's eviction policy. *simplelru.LRU satisfies it as is.
// Add reports whether it evicted a live item to make room; simplelru's
// onEvict callback is not used for that count because it also fires on
// Remove and Purge (and on 2Q's internal moves between lists).
type store[T any] interface {
	Get(h uint64) (*item[T], bool) // updates recency
	Peek(h uint64) (*item[T], bool)
	Add(h uint64, it *item[T]) (evicted bool)
	Remove(h uint64) bool
	Len() int
	Purge()
}

// shardState is the part of a shard whose size does not depend on T, so the
// padding below can be a constant.
type shardState struct {
	mu sync.Mutex
	// gen is the invalidation generation. It is bumped only under mu, but
	// Token reads it without mu (atomically): a token read just before a
	// bump is simply refused by the comparison under mu in SetIfUnchanged.
	gen   atomic.Uint64
	stats Stats // plain counters, written under mu
}

type shard[T any] struct {
	shardState
	s store[T]
	// Pad to a multiple of cacheLine so that neighbouring shards' locks and
	// counters do not share a cache line.
	_ [(cacheLine - (unsafe.Sizeof(shardState{})+unsafe.Sizeof(store[int](nil)))%cacheLine) % cacheLine]byte
}

// Cache maps a 64-bit key hash, computed by the caller (xxhash64 of the key in
// tiercache), to an item {key, value, expiry}. Only one item is stored per
// hash: storing key B under the hash of key A replaces A, and a later Get of A
// is a miss (counted in Collisions). All methods are safe for concurrent use.
type Cache[T any] struct {
	shards []shard[T]
	shift  uint // 64 - log2(len(shards))
}

// New returns an empty cache configured by o.
func New[T any](o Options) *Cache[T] {
	capacity := o.Capacity
	if capacity <= 0 {
		capacity = defaultCapacity
	}
	n := shardCount(capacity, o.Shards)
	c := &Cache[T]{
		shards: make([]shard[T], n),
		shift:  uint(64 - bits.TrailingZeros64(uint64(n))),
	}
	for i := range c.shards {
		size := capacity / n
		if i < capacity%n {
			size++
		}
		if o.Policy == TwoQueue {
			c.shards[i].s = newTwoQueue[T](size)
		} else {
			c.shards[i].s = newLRU[*item[T]](size)
		}
	}
	return c
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

func (c *Cache[T]) shard(h uint64) *shard[T] {
	// A shift of 64 (one shard) yields 0 in Go.
	return &c.shards[(h*mix)>>c.shift]
}

// Get returns the value stored for (h, key) if the stored item's key is key
// and now < its expiry. An item under h with another key is a collision and a
// miss (the item stays: it is valid for its own key). An expired item is
// removed. Get takes one shard lock and does not allocate.
func (c *Cache[T]) Get(h uint64, key string, now int64) (T, bool) {
	if p := c.Ref(h, key, now); p != nil {
		return *p, true
	}
	var zero T
	return zero, false
}

// Ref is Get without the copy: it returns a pointer to the stored value, or
// nil. Stored values are never modified in place (an overwrite stores a new
// item), so the pointer stays valid and unchanged after the lock is
// released; the caller must not modify what it points to. For large values
// this saves copying them out of the shard and again to the caller.
func (c *Cache[T]) Ref(h uint64, key string, now int64) *T {
	sh := c.shard(h)
	sh.mu.Lock()
	it, ok := sh.s.Get(h)
	switch {
	case !ok:
	case it.key != key:
		sh.stats.Collisions++
	case now >= it.expire:
		sh.s.Remove(h)
		sh.stats.Expired++
	default:
		sh.stats.Hits++
		sh.mu.Unlock()
		return &it.val
	}
	sh.stats.Misses++
	sh.mu.Unlock()
	return nil
}

// Token returns the current invalidation generation of h's shard. Take it
// before starting to read a value from a slower tier, and pass it to
// SetIfUnchanged.
func (c *Cache[T]) Token(h uint64) uint64 {
	return c.shard(h).gen.Load()
}

// SetIfUnchanged stores (key, val) under h, expiring at expire, only if no
// Set, Delete or Purge touched h's shard since tok was taken by Token. It
// reports whether it stored. Storing does not bump the generation, so
// concurrent fills of other keys in the shard are not refused.
func (c *Cache[T]) SetIfUnchanged(h uint64, key string, val T, expire int64, tok uint64) bool {
	sh := c.shard(h)
	sh.mu.Lock()
	if sh.gen.Load() != tok {
		sh.stats.Refused++
		sh.mu.Unlock()
		return false
	}
	sh.put(h, key, val, expire)
	sh.mu.Unlock()
	return true
}

// Set stores (key, val) under h, expiring at expire, unconditionally, and
// bumps the shard's generation so that fills which started before it are
// refused.
func (c *Cache[T]) Set(h uint64, key string, val T, expire int64) {
	sh := c.shard(h)
	sh.mu.Lock()
	sh.put(h, key, val, expire)
	sh.gen.Add(1)
	sh.mu.Unlock()
}

// Replace is the local step of a write-through. If no Set, Delete or Purge
// touched h's shard since tok was taken, it stores (key, val); otherwise a
// concurrent write may be newer than this one, so it removes key's item
// instead. Either way it bumps the generation, so fills that read the old
// value before the write are refused. It reports whether it stored.
func (c *Cache[T]) Replace(h uint64, key string, val T, expire int64, tok uint64) bool {
	sh := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	stored := sh.gen.Load() == tok
	if stored {
		sh.put(h, key, val, expire)
	} else if it, ok := sh.s.Peek(h); ok && it.key == key {
		sh.s.Remove(h)
		sh.stats.Deletes++
	}
	sh.gen.Add(1)
	return stored
}

// put stores under sh.mu, reusing the item already stored under h.
func (sh *shard[T]) put(h uint64, key string, val T, expire int64) {
	it := &item[T]{key: key, val: val, expire: expire}
	if sh.s.Add(h, it) {
		sh.stats.Evictions++
	}
	sh.stats.Sets++
}

// Delete removes the item under h if its key is key (an item of a colliding
// key is left alone) and reports whether it removed one. It bumps the shard's
// generation even when nothing was removed, because a fill of key may be in
// flight.
func (c *Cache[T]) Delete(h uint64, key string) bool {
	sh := c.shard(h)
	sh.mu.Lock()
	sh.gen.Add(1)
	it, ok := sh.s.Peek(h)
	removed := ok && it.key == key
	if removed {
		sh.s.Remove(h)
		sh.stats.Deletes++
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
		sh.s.Purge()
		sh.gen.Add(1)
		sh.mu.Unlock()
	}
}

// Len returns the number of items stored, expired ones included until a Get
// finds them.
func (c *Cache[T]) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.s.Len()
		sh.mu.Unlock()
	}
	return n
}

// Stats returns the counters summed over all shards, each read under its
// shard's lock.
func (c *Cache[T]) Stats() Stats {
	var s Stats
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		s.add(&sh.stats)
		sh.mu.Unlock()
	}
	return s
}

// Shards returns the number of shards.
func (c *Cache[T]) Shards() int { return len(c.shards) }

// newLRU returns a simplelru without eviction callback. size is raised to 1:
// simplelru refuses smaller sizes, its only error.
func newLRU[V any](size int) *simplelru.LRU[uint64, V] {
	l, err := simplelru.NewLRU[uint64, V](max(size, 1), nil)
	if err != nil {
		panic("local: simplelru.NewLRU: " + err.Error()) // unreachable: size >= 1
	}
	return l
}

// twoQueue is golang-lru/v2's TwoQueueCache (2q.go) without its lock; the
// shard mutex guards it. recent and frequent are each sized for the whole
// shard, and Add keeps their sum within size.
type twoQueue[T any] struct {
	size       int
	recentSize int
	recent     *simplelru.LRU[uint64, *item[T]] // seen once
	frequent   *simplelru.LRU[uint64, *item[T]] // seen at least twice
	ghost      *simplelru.LRU[uint64, struct{}] // recently evicted from recent
}

func newTwoQueue[T any](size int) *twoQueue[T] {
	size = max(size, 1)
	return &twoQueue[T]{
		size:       size,
		recentSize: int(float64(size) * recentRatio),
		recent:     newLRU[*item[T]](size),
		frequent:   newLRU[*item[T]](size),
		ghost:      newLRU[struct{}](int(float64(size) * ghostRatio)),
	}
}

func (q *twoQueue[T]) Get(h uint64) (*item[T], bool) {
	if it, ok := q.frequent.Get(h); ok {
		return it, true
	}
	if it, ok := q.recent.Peek(h); ok {
		q.recent.Remove(h)
		q.frequent.Add(h, it)
		return it, true
	}
	return nil, false
}

func (q *twoQueue[T]) Peek(h uint64) (*item[T], bool) {
	if it, ok := q.frequent.Peek(h); ok {
		return it, true
	}
	return q.recent.Peek(h)
}

func (q *twoQueue[T]) Add(h uint64, it *item[T]) (evicted bool) {
	if q.frequent.Contains(h) {
		q.frequent.Add(h, it)
		return false
	}
	if q.recent.Contains(h) {
		q.recent.Remove(h)
		q.frequent.Add(h, it)
		return false
	}
	if q.ghost.Contains(h) {
		evicted = q.makeRoom(true)
		q.ghost.Remove(h)
		q.frequent.Add(h, it)
		return evicted
	}
	evicted = q.makeRoom(false)
	q.recent.Add(h, it)
	return evicted
}

// makeRoom is 2q.go's ensureSpace: when full, evict from recent while it is
// over its share (remembering the hash in ghost), else from frequent.
// forFrequent says the new item goes to frequent.
func (q *twoQueue[T]) makeRoom(forFrequent bool) bool {
	recentLen, freqLen := q.recent.Len(), q.frequent.Len()
	if recentLen+freqLen < q.size {
		return false
	}
	if recentLen > 0 && (recentLen > q.recentSize || (recentLen == q.recentSize && !forFrequent)) {
		h, _, _ := q.recent.RemoveOldest()
		q.ghost.Add(h, struct{}{})
		return true
	}
	q.frequent.RemoveOldest()
	return true
}

// Remove removes a live item. The ghost list is history, not content, and is
// left alone.
func (q *twoQueue[T]) Remove(h uint64) bool {
	return q.frequent.Remove(h) || q.recent.Remove(h)
}

func (q *twoQueue[T]) Len() int { return q.recent.Len() + q.frequent.Len() }

func (q *twoQueue[T]) Purge() {
	q.recent.Purge()
	q.frequent.Purge()
	q.ghost.Purge()
}
