package pgcdc

import "sync"

// work is what one target must be told: ids to delete, groups to bump, and
// whether everything goes (all). For a target that can invalidate all, all
// makes ids and groups moot; one that cannot keeps them beside all, so that
// what it can do is still done.
type work struct {
	ids    map[string]struct{}
	groups map[string]struct{}
	all    bool
}

// batch holds the invalidations of one or more consecutive committed
// transactions, per target, and the end LSN that confirming them reaches.
type batch struct {
	work    []work // indexed by target number
	end     uint64 // end of the last transaction's commit record
	txns    int    // transactions merged into the batch
	changes int    // row changes of watched tables
	limits  []int  // per target: most ids (or groups) held before all; 0: it cannot invalidate all, so no bound
}

func newBatch(limits []int) *batch {
	return &batch{work: make([]work, len(limits)), limits: limits}
}

func (b *batch) addID(t int, id string)       { b.add(t, &b.work[t].ids, id) }
func (b *batch) addGroup(t int, group string) { b.add(t, &b.work[t].groups, group) }

// add puts s into target t's set (its ids or its groups), unless the whole
// target goes anyway.
func (b *batch) add(t int, set *map[string]struct{}, s string) {
	if b.whole(t) {
		return
	}
	if *set == nil {
		*set = make(map[string]struct{})
	}
	(*set)[s] = struct{}{}
	b.bound(t)
}

// invalidateAll marks target t's whole keyspace for invalidation. A target
// that cannot invalidate all keeps its ids and groups: they are still
// applied, and the applier reports the all it could not do.
func (b *batch) invalidateAll(t int) {
	if b.limits[t] == 0 {
		b.work[t].all = true
		return
	}
	b.work[t] = work{all: true}
}

// whole reports whether target t's whole keyspace goes, so that ids and
// groups need not be kept.
func (b *batch) whole(t int) bool {
	return b.work[t].all && b.limits[t] > 0
}

// bound turns target t's work into all once it holds more than its limit.
func (b *batch) bound(t int) {
	w := &b.work[t]
	if l := b.limits[t]; l > 0 && (len(w.ids) > l || len(w.groups) > l) {
		b.invalidateAll(t)
	}
}

// merge adds o, the next transaction, to b.
func (b *batch) merge(o *batch) {
	for t := range o.work {
		src := &o.work[t]
		if src.all {
			b.invalidateAll(t)
		}
		if b.whole(t) {
			continue
		}
		dst := &b.work[t]
		if dst.ids == nil {
			dst.ids = src.ids
		} else {
			for id := range src.ids {
				dst.ids[id] = struct{}{}
			}
		}
		if dst.groups == nil {
			dst.groups = src.groups
		} else {
			for g := range src.groups {
				dst.groups[g] = struct{}{}
			}
		}
		b.bound(t)
	}
	b.end = max(b.end, o.end)
	b.txns += o.txns
	b.changes += o.changes
}

// empty reports whether b asks nothing of any target.
func (b *batch) empty() bool {
	for i := range b.work {
		if w := &b.work[i]; w.all || len(w.ids) > 0 || len(w.groups) > 0 {
			return false
		}
	}
	return true
}

// ledger is where the receiver hands committed transactions to the applier,
// and where both learn what may be confirmed to PostgreSQL: nothing beyond
// the last transaction whose invalidations all returned nil, except a
// server WAL end seen while nothing at all was in flight.
type ledger struct {
	mu       sync.Mutex
	next     *batch // committed, not yet taken by the applier
	applying bool   // the applier holds a batch
	applied  uint64 // end of the last applied transaction
	idleAck  uint64 // WAL end the server reported while nothing was in flight

	wake chan struct{} // capacity 1: there is a batch to take
}

func newLedger() *ledger { return &ledger{wake: make(chan struct{}, 1)} }

// commit hands a committed transaction to the applier. A transaction that
// asks nothing is applied at once when nothing is ahead of it.
func (l *ledger) commit(b *batch) {
	l.mu.Lock()
	if l.next == nil && !l.applying && b.empty() {
		l.applied = max(l.applied, b.end)
		l.mu.Unlock()
		return
	}
	if l.next == nil {
		l.next = b
	} else {
		l.next.merge(b)
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take returns the batch to apply next, or nil.
func (l *ledger) take() *batch {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.next
	l.next = nil
	if b != nil {
		l.applying = true
	}
	return b
}

// done records that the taken batch, up to end, is applied.
func (l *ledger) done(end uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applying = false
	l.applied = max(l.applied, end)
}

// idle records the server's WAL end from a keepalive received outside any
// transaction: when nothing is in flight either, everything up to it is
// either applied or irrelevant to the rules, so it may be confirmed. Every
// transaction committed before walEnd was received before the keepalive.
func (l *ledger) idle(walEnd uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil && !l.applying {
		l.idleAck = max(l.idleAck, walEnd)
	}
}

// raise records a position confirmed already (by an earlier consumer of
// the slot).
func (l *ledger) raise(lsn uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.idleAck = max(l.idleAck, lsn)
}

// confirmable returns the position that may be confirmed now.
func (l *ledger) confirmable() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.applied, l.idleAck)
}
