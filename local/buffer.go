package local

import (
	"math/bits"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// A hit records its node in a read buffer instead of updating the policy,
// which needs the shard lock. Each shard has a set of stripes; a reader
// picks one by the address of its own stack, so goroutines running at the
// same time mostly write to different stripes (and cache lines). A stripe
// is a ring of 16 slots written at position hits&15: hits counts the
// stripe's hits exactly (it is the Stats counter) and a slot is simply
// overwritten when the ring wraps before a drain: the buffer is lossy by
// design, since recency and frequency are estimates anyway. A slot keeps
// its node reachable until overwritten, so up to 16 removed items per
// stripe stay in memory a while (Purge clears them). The reader
// whose hit completes a ring tries the shard lock (TryLock, never Lock)
// and, if it wins, drains every stripe into the policy; writers drain
// under the lock they already hold.
//
// A stripe starts alone; a reader whose increment of hits loses a race
// (another core on the same stripe) counts it, and a drain that sees
// contention doubles the stripes (up to 2*GOMAXPROCS, rounded up) or, at
// the maximum, re-salts the stack hash so that colliding goroutines part.

const (
	stripeSlots = 16
	// contendedAfter is how many lost races a stripe tolerates between
	// drains before the shard adds stripes.
	contendedAfter = 4
	// quietDrainEvery: a ring whose 16 slots all hold the node just read
	// (a hot key) is drained only every quietDrainEvery hits of the stripe,
	// so that a hot key does not take the shard lock every 16 hits.
	quietDrainEvery = 256
)

type stripe[T any] struct {
	hits       atomic.Uint64 // hits of the shard through this stripe; the ring position
	misses     atomic.Uint64
	collisions atomic.Uint64
	contended  atomic.Uint32
	slots      [stripeSlots]atomic.Pointer[node[T]]
	drained    uint64 // hits at the last drain; under the shard lock
	_          [cacheLine - (4*8+stripeSlots*8+8)%cacheLine]byte
}

// stripes is an immutable set of stripes; growing publishes a new set that
// keeps the old stripes (and their counts).
type stripes[T any] struct {
	mask uint64
	salt uint64
	s    []*stripe[T]
}

func newStripes[T any]() *stripes[T] {
	return &stripes[T]{s: []*stripe[T]{new(stripe[T])}}
}

// maxStripes is the stripe count past which a shard re-salts instead.
var maxStripes = 1 << bits.Len(uint(2*runtime.GOMAXPROCS(0)-1))

// mine returns the calling goroutine's stripe.
func (ss *stripes[T]) mine() *stripe[T] {
	var x byte
	// Bits below 2 KiB (the smallest goroutine stack) depend on call depth
	// rather than on the goroutine.
	sp := uint64(uintptr(unsafe.Pointer(&x))) >> 11
	return ss.s[((sp^ss.salt)*mix)>>32&ss.mask]
}

// record counts a hit of n and stores n in the ring. It reports whether the
// ring completed a round, so the caller should try to drain.
func (st *stripe[T]) record(n *node[T]) (drain bool, hits uint64) {
	t := st.hits.Load() + 1
	if !st.hits.CompareAndSwap(t-1, t) {
		t = st.hits.Add(1)
		st.contended.Add(1)
	}
	slot := &st.slots[t&(stripeSlots-1)]
	if slot.Load() != n { // a hot key finds itself there: no write
		slot.Store(n)
	}
	if t&(stripeSlots-1) != 0 {
		return false, t
	}
	return t&(quietDrainEvery-1) == 0 || !st.allAre(n), t
}

func (st *stripe[T]) allAre(n *node[T]) bool {
	for i := range st.slots {
		if st.slots[i].Load() != n {
			return false
		}
	}
	return true
}

// drain feeds the nodes recorded since the last drain (at most a ring's
// worth: older ones were overwritten) to the policy, in one batch. Under
// the shard lock.
func (st *stripe[T]) drain(p *policy[T]) {
	t := st.hits.Load()
	from := max(st.drained, t-min(t, stripeSlots))
	st.drained = t
	var batch [stripeSlots]*node[T]
	k := 0
	for i := from + 1; i <= t; i++ {
		if n := st.slots[i&(stripeSlots-1)].Load(); n != nil {
			batch[k] = n
			k++
		}
	}
	p.accessAll(batch[:k])
}

// grown returns the set to publish after contention, or nil to keep ss.
func (ss *stripes[T]) grown() *stripes[T] {
	contended := false
	for _, st := range ss.s {
		if c := st.contended.Load(); c != 0 {
			contended = contended || c >= contendedAfter
			st.contended.Store(0)
		}
	}
	if !contended {
		return nil
	}
	next := &stripes[T]{mask: ss.mask, salt: ss.salt*mix + 1, s: ss.s}
	if len(ss.s) < maxStripes {
		next.s = make([]*stripe[T], 2*len(ss.s))
		copy(next.s, ss.s)
		for i := len(ss.s); i < len(next.s); i++ {
			next.s[i] = new(stripe[T])
		}
		next.mask = uint64(len(next.s) - 1)
	}
	return next
}

// forget drops the ring's references to nodes, which keep removed items
// reachable until overwritten (at most 16 per stripe). Under the shard
// lock; a concurrent hit may store one again.
func (ss *stripes[T]) forget() {
	for _, st := range ss.s {
		for i := range st.slots {
			st.slots[i].Store(nil)
		}
		st.drained = st.hits.Load()
	}
}

// counts sums the reader-side counters.
func (ss *stripes[T]) counts() (hits, misses, collisions uint64) {
	for _, st := range ss.s {
		hits += st.hits.Load()
		misses += st.misses.Load()
		collisions += st.collisions.Load()
	}
	return hits, misses, collisions
}
