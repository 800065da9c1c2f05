package local

// node is what a shard stores under a hash. key, val, expire, hash and cost
// never change once the node is published in the index: an overwrite
// stores a new node. That is what lets Ref hand out &val without a lock.
// The remaining fields are the policy's, read and written only under the
// shard lock.
type node[T any] struct {
	// What a hit reads first, together in the node's first cache line.
	hash   uint64
	key    string
	expire int64
	val    T

	prev, next *node[T]
	cost       uint32 // bytes charged against MaxBytes: Size + Overhead()
	queue      queue
	windowHit  bool // hit while in the window: it leaves it for protected
}

// queue says which policy list holds a node; queueNone once it is removed,
// so that a stale reference in a read buffer is recognised and skipped.
type queue uint8

const (
	queueNone queue = iota
	queueWindow
	queueProbation
	queueProtected
)

// list is an intrusive doubly linked list, most recently used at head.
type list[T any] struct {
	head, tail *node[T]
	len        int
}

func (l *list[T]) pushFront(n *node[T]) {
	n.prev, n.next = nil, l.head
	if l.head != nil {
		l.head.prev = n
	} else {
		l.tail = n
	}
	l.head = n
	l.len++
}

func (l *list[T]) remove(n *node[T]) {
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		l.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		l.tail = n.prev
	}
	n.prev, n.next = nil, nil
	l.len--
}

func (l *list[T]) moveToFront(n *node[T]) {
	if l.head != n {
		l.remove(n)
		l.pushFront(n)
	}
}

// swap puts n where old is; old leaves the list.
func (l *list[T]) swap(old, n *node[T]) {
	n.prev, n.next = old.prev, old.next
	if n.prev != nil {
		n.prev.next = n
	} else {
		l.head = n
	}
	if n.next != nil {
		n.next.prev = n
	} else {
		l.tail = n
	}
	old.prev, old.next = nil, nil
}

// clear marks every node removed and empties the list.
func (l *list[T]) clear() {
	for n := l.head; n != nil; {
		next := n.next
		n.prev, n.next, n.queue = nil, nil, queueNone
		n = next
	}
	*l = list[T]{}
}

// policy is one shard's eviction policy. It knows nothing of locks or of
// the index: the shard calls it under its lock.
//
// LRU keeps every node in window, with no size limit. TinyLFU (W-TinyLFU)
// inserts into window (windowMax nodes); the window's least recently used
// node moves to probation when the window overflows, or, when room must be
// made, duels with probation's least recently used node, the sketch
// deciding which stays. A hit in probation promotes to protected
// (protectedMax nodes); the overflow falls back to probation when room is
// next made, not on the hit. The sketch counts stores and hits outside
// protected.
type policy[T any] struct {
	lru                     bool
	window                  list[T]
	probation, protected    list[T]
	windowMax, protectedMax int
	sketch                  sketch
	rand                    uint64 // xorshift state for admit
}

// admitRandomFrom is the candidate frequency from which a candidate that
// does not beat its victim is still admitted once in 128: an adversary
// who floods the sketch to make a victim look hot cannot keep every new
// key out (Caffeine's defence against hash flooding).
const admitRandomFrom = 6

func (p *policy[T]) init(kind Policy, share int, seed uint64) {
	p.lru = kind == LRU
	p.windowMax = max(1, share/100)
	p.protectedMax = (share - p.windowMax) * 8 / 10
	p.rand = seed | 1
	if !p.lru {
		p.sketch.init(seed)
	}
}

func (p *policy[T]) listOf(q queue) *list[T] {
	switch q {
	case queueWindow:
		return &p.window
	case queueProbation:
		return &p.probation
	default:
		return &p.protected
	}
}

// add puts a new node in the window; live is the shard's node count after
// the add, by which the sketch is sized.
func (p *policy[T]) add(n *node[T], live int) {
	n.queue = queueWindow
	p.window.pushFront(n)
	if p.lru {
		return
	}
	p.sketch.ensure(live)
	p.sketch.increment(n.hash)
	if p.window.len > p.windowMax {
		p.admitFromWindow(p.window.tail)
	}
}

// admitFromWindow moves n from the window to the main space: to protected
// if it was hit in the window (it has been seen twice), else to probation.
func (p *policy[T]) admitFromWindow(n *node[T]) {
	p.window.remove(n)
	if !n.windowHit {
		n.queue = queueProbation
		p.probation.pushFront(n)
		return
	}
	n.queue = queueProtected
	p.protected.pushFront(n)
}

// demoteProtected moves protected's least recently used nodes to probation
// while protected is over its size. It runs when room must be made, not on
// every promotion: the nodes it moves are the coldest in the shard, so
// each costs cache misses, and until a victim is needed their place
// changes nothing. (A loop over exactly the capacity otherwise demoted, on
// every hit, the very node the loop read next.)
func (p *policy[T]) demoteProtected() {
	for p.protected.len > p.protectedMax {
		d := p.protected.tail
		p.protected.remove(d)
		d.queue = queueProbation
		p.probation.pushFront(d)
	}
}

// replace puts n in old's place (an overwrite of the same hash counts as an
// access).
func (p *policy[T]) replace(old, n *node[T]) {
	n.queue, n.windowHit = old.queue, old.windowHit
	p.listOf(old.queue).swap(old, n)
	old.queue = queueNone
	p.access(n)
}

// accessAll records hits of ns. The sketch counters of a node are one
// random cache line, so it first loads the lines of all of them, which
// the CPU fetches in parallel, and only then updates them one by one.
func (p *policy[T]) accessAll(ns []*node[T]) {
	if !p.lru {
		for _, n := range ns {
			if n.queue != queueProtected && n.queue != queueNone {
				p.sketch.prefetch(n.hash)
			}
		}
	}
	for _, n := range ns {
		p.access(n)
	}
}

// access records a hit of n.
func (p *policy[T]) access(n *node[T]) {
	switch n.queue {
	case queueNone:
		return // removed since the read buffer recorded it
	case queueWindow:
		p.window.moveToFront(n)
		if !n.windowHit { // no needless write to a line readers load
			n.windowHit = true
		}
	case queueProtected:
		// Not counted: a protected node is compared with nothing until it
		// falls back to probation, which a node hit this recently will not
		// do soon, and by then its old counts have aged anyway. Skipping
		// the sketch here saves a cache miss on most hits and measured no
		// worse (slightly better) on the Zipf, scan and loop workloads.
		p.protected.moveToFront(n)
		return
	case queueProbation:
		p.probation.remove(n)
		n.queue = queueProtected
		p.protected.pushFront(n)
	}
	if !p.lru {
		p.sketch.increment(n.hash)
	}
}

// remove takes n out of the policy.
func (p *policy[T]) remove(n *node[T]) {
	if n.queue != queueNone {
		p.listOf(n.queue).remove(n)
		n.queue = queueNone
	}
}

// victim returns the node to evict to make room for one more, or nil if
// the policy is empty. Under TinyLFU, when the window is full its least
// recently used node (the candidate) duels with the main space's: the
// candidate wins only if the sketch counts it more often; a winner moves
// to probation and the loser is returned.
func (p *policy[T]) victim() *node[T] {
	if p.lru {
		return p.window.tail
	}
	p.demoteProtected()
	main := p.probation.tail
	if main == nil {
		main = p.protected.tail
	}
	cand := p.window.tail
	switch {
	case main == nil:
		return cand
	case cand == nil || p.window.len < p.windowMax:
		return main
	case !p.admit(cand.hash, main.hash):
		return cand
	}
	p.admitFromWindow(cand)
	return main
}

func (p *policy[T]) admit(cand, victim uint64) bool {
	cf, vf := p.sketch.frequency(cand), p.sketch.frequency(victim)
	if cf > vf {
		return true
	}
	if cf < admitRandomFrom {
		return false
	}
	p.rand ^= p.rand << 13
	p.rand ^= p.rand >> 7
	p.rand ^= p.rand << 17
	return p.rand&127 == 0
}

// clear removes every node.
func (p *policy[T]) clear() {
	p.window.clear()
	p.probation.clear()
	p.protected.clear()
}
