package local

import (
	"math/bits"
	"sync/atomic"
)

// The index maps a hash to its node. Readers probe it with atomic loads and
// no lock; writers change it under the shard lock. It is open addressing
// over buckets of 8 slots: a bucket keeps one tag byte per slot in a single
// word, so one load and a few ALU operations (SWAR) tell which slots may
// hold the hash, and only those slots' nodes are read. A bucket is 64
// bytes, one cache line: the tag word and 7 node pointers (the eighth tag
// byte is permanently "deleted", so it never matches and never ends a
// probe). A slot's tag is empty (0), deleted (1), or 0x80 | 7 bits of the
// hash. Probing moves to
// the next bucket until a bucket with an empty slot: at least one always
// exists, because a table is rebuilt before its used slots (full or
// deleted) pass 7/8.
//
// A table is never resized in place: a rebuild fills a new one and
// publishes it with one atomic store. A reader still on the old table sees
// the cache as it was just before the rebuild, which is a valid moment of
// its own call.

const (
	bucketSlots = 7
	tagEmpty    = 0x00
	tagDeleted  = 0x01
	lsbs        = 0x0101010101010101
	msbs        = 0x8080808080808080
	// emptyTags is a new bucket's tag word: 7 empty slots and the unused
	// eighth byte marked deleted.
	emptyTags = tagDeleted << (8 * bucketSlots)
	slotMsbs  = msbs >> 8 // the high bits of the 7 slot bytes

	// maxLoadNum/maxLoadDen is the used-slot ratio that triggers a rebuild;
	// a rebuild sizes the table for a load of 1/rebuildLoadDen.
	maxLoadNum, maxLoadDen = 7, 8
	rebuildLoadDen         = 2

	// indexMix picks the home bucket from the hash's bits, independently of
	// the shard choice (which uses mix).
	indexMix = 0xD6E8FEB86659FD93
)

type bucket[T any] struct {
	tags  atomic.Uint64
	nodes [bucketSlots]atomic.Pointer[node[T]]
}

// table's bucket slice never changes once published; its buckets' contents
// and its counts change under the shard lock. The counts sit a cache line
// away from the slice header that every reader loads.
type table[T any] struct {
	buckets []bucket[T]
	_       [cacheLine - 24]byte
	live    int // slots holding a node
	used    int // slots not empty: live plus deleted
}

func newTable[T any](live int) *table[T] {
	n := max(1, (live*rebuildLoadDen+bucketSlots-1)/bucketSlots)
	t := &table[T]{buckets: make([]bucket[T], n)}
	for i := range t.buckets {
		t.buckets[i].tags.Store(emptyTags)
	}
	return t
}

func tagOf(h uint64) uint64 { return 0x80 | h>>57 }

// home returns h's first bucket: a multiply-shift range reduction, so the
// bucket count need not be a power of two.
func (t *table[T]) home(h uint64) int {
	hi, _ := bits.Mul64(h*indexMix, uint64(len(t.buckets)))
	return int(hi)
}

// matches has the high bit set in every slot byte of w equal to tag, and
// possibly in slot bytes above a match (the callers check the node's hash).
func matches(w, tag uint64) uint64 {
	x := w ^ (lsbs * tag)
	return (x - lsbs) &^ x & slotMsbs
}

// hasEmpty reports whether some byte of w is tagEmpty.
func hasEmpty(w uint64) bool { return (w-lsbs)&^w&msbs != 0 }

// find returns the node stored under h, or nil. It takes no lock.
func (t *table[T]) find(h uint64) *node[T] {
	tag := tagOf(h)
	for i := t.home(h); ; {
		b := &t.buckets[i]
		w := b.tags.Load()
		for m := matches(w, tag); m != 0; m &= m - 1 {
			if n := b.nodes[bits.TrailingZeros64(m)>>3].Load(); n != nil && n.hash == h {
				return n
			}
		}
		if hasEmpty(w) {
			return nil
		}
		if i++; i == len(t.buckets) {
			i = 0
		}
	}
}

// slotRef names one slot of a table.
type slotRef[T any] struct {
	b *bucket[T]
	i int
}

func (s slotRef[T]) tag() uint64 { return s.b.tags.Load() >> (uint(s.i) * 8) & 0xff }

func (s slotRef[T]) setTag(tag uint64) {
	shift := uint(s.i * 8)
	w := s.b.tags.Load()
	s.b.tags.Store(w&^(0xff<<shift) | tag<<shift)
}

// lookup returns h's slot if h is stored, else the first free slot (empty
// or deleted) of its probe sequence. Under the shard lock.
func (t *table[T]) lookup(h uint64) (s slotRef[T], found bool) {
	tag := tagOf(h)
	var free slotRef[T]
	for i := t.home(h); ; {
		b := &t.buckets[i]
		w := b.tags.Load()
		for m := matches(w, tag); m != 0; m &= m - 1 {
			j := bits.TrailingZeros64(m) >> 3
			if n := b.nodes[j].Load(); n != nil && n.hash == h {
				return slotRef[T]{b, j}, true
			}
		}
		if free.b == nil {
			if m := ^w & slotMsbs; m != 0 { // high bit clear: empty or deleted
				free = slotRef[T]{b, bits.TrailingZeros64(m) >> 3}
			}
		}
		if hasEmpty(w) {
			return free, false
		}
		if i++; i == len(t.buckets) {
			i = 0
		}
	}
}

// index is a shard's current table.
type index[T any] struct{ table atomic.Pointer[table[T]] }

// reset publishes an empty table.
func (x *index[T]) reset() { x.table.Store(newTable[T](0)) }

// find returns the node stored under h, or nil, without a lock.
func (x *index[T]) find(h uint64) *node[T] { return x.table.Load().find(h) }

// put stores n under n.hash and returns the node it replaced, if any.
// Under the shard lock, as are remove and rebuild.
func (x *index[T]) put(n *node[T]) (old *node[T]) {
	t := x.table.Load()
	s, found := t.lookup(n.hash)
	if found {
		old = s.b.nodes[s.i].Load()
		s.b.nodes[s.i].Store(n)
		return old
	}
	if s.tag() == tagEmpty {
		if (t.used+1)*maxLoadDen > len(t.buckets)*bucketSlots*maxLoadNum {
			t = x.rebuild(t, t.live+1)
			s, _ = t.lookup(n.hash)
		}
		if s.tag() == tagEmpty {
			t.used++
		}
	}
	// The node first, then its tag: a reader that sees the tag finds the
	// node (or, if it loses the race, a miss: never another node).
	s.b.nodes[s.i].Store(n)
	s.setTag(tagOf(n.hash))
	t.live++
	return nil
}

// remove deletes n if it is the node stored under n.hash.
func (x *index[T]) remove(n *node[T]) bool {
	t := x.table.Load()
	s, found := t.lookup(n.hash)
	if !found || s.b.nodes[s.i].Load() != n {
		return false
	}
	s.setTag(tagDeleted)
	s.b.nodes[s.i].Store(nil)
	if t.live--; t.live == 0 && len(t.buckets) > 1 {
		x.reset() // drop the tombstones and the memory of a large table
	}
	return true
}

// rebuild publishes a copy of old sized for live nodes, without
// tombstones, and returns it.
func (x *index[T]) rebuild(old *table[T], live int) *table[T] {
	t := newTable[T](live)
	for i := range old.buckets {
		for j := range old.buckets[i].nodes {
			if n := old.buckets[i].nodes[j].Load(); n != nil {
				s, _ := t.lookup(n.hash)
				s.b.nodes[s.i].Store(n)
				s.setTag(tagOf(n.hash))
				t.live++
			}
		}
	}
	t.used = t.live
	x.table.Store(t)
	return t
}
