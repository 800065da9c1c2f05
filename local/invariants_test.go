package local

import (
	"fmt"
	"testing"
)

// checkInvariants locks every shard and verifies that the index, the
// policy lists, the counts and the budget agree. Call it when no store is
// in flight (budget reservations are not yet items).
func checkInvariants[T any](t *testing.T, c *Cache[T]) {
	t.Helper()
	var entries, charged int64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		err := checkShard(c, sh)
		entries += sh.count.Load()
		charged += sh.bytes.Load()
		sh.mu.Unlock()
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
	}
	if got := c.budget.entries.Load(); got != entries || entries > c.budget.maxEntries {
		t.Fatalf("budget holds %d items, shards %d, capacity %d", got, entries, c.budget.maxEntries)
	}
	if c.maxBytes > 0 {
		if got := c.budget.bytes.Load(); got != charged || charged > c.maxBytes {
			t.Fatalf("budget holds %d bytes, shards %d, MaxBytes %d", got, charged, c.maxBytes)
		}
	}
}

func checkShard[T any](c *Cache[T], sh *shard[T]) error {
	p := &sh.policy
	inLists := map[*node[T]]bool{}
	var bytes int64
	for _, l := range []struct {
		q queue
		l *list[T]
	}{{queueWindow, &p.window}, {queueProbation, &p.probation}, {queueProtected, &p.protected}} {
		n, count := l.l.head, 0
		var prev *node[T]
		for ; n != nil; n = n.next {
			if n.prev != prev || n.queue != l.q || inLists[n] {
				return fmt.Errorf("list %d broken at node %q", l.q, n.key)
			}
			if sh.index.find(n.hash) != n {
				return fmt.Errorf("node %q in list %d but not in the index", n.key, l.q)
			}
			if c.shard(n.hash) != sh {
				return fmt.Errorf("node %q in the wrong shard", n.key)
			}
			inLists[n] = true
			bytes += int64(n.cost)
			prev, count = n, count+1
		}
		if l.l.tail != prev || l.l.len != count {
			return fmt.Errorf("list %d: len %d, counted %d", l.q, l.l.len, count)
		}
	}
	// protected may be over its size until room is next made.
	if !p.lru && p.window.len > p.windowMax {
		return fmt.Errorf("window %d/%d", p.window.len, p.windowMax)
	}
	tb := sh.index.table.Load()
	live, used := 0, 0
	for i := range tb.buckets {
		b := &tb.buckets[i]
		w := b.tags.Load()
		if w>>(8*bucketSlots) != tagDeleted {
			return fmt.Errorf("bucket %d: spare tag byte %#x", i, w>>(8*bucketSlots))
		}
		for j := range b.nodes {
			tag, n := w>>(8*j)&0xff, b.nodes[j].Load()
			switch {
			case tag == tagEmpty || tag == tagDeleted:
				if n != nil {
					return fmt.Errorf("bucket %d slot %d: tag %d with a node", i, j, tag)
				}
			case n == nil || tag != tagOf(n.hash) || !inLists[n]:
				return fmt.Errorf("bucket %d slot %d: tag %#x, node not in the policy", i, j, tag)
			default:
				live++
			}
			if tag != tagEmpty {
				used++
			}
		}
	}
	if live != tb.live || used != tb.used || live != len(inLists) || int64(live) != sh.count.Load() {
		return fmt.Errorf("index live %d (says %d), used %d (says %d), policy %d, count %d",
			live, tb.live, used, tb.used, len(inLists), sh.count.Load())
	}
	if bytes != sh.bytes.Load() {
		return fmt.Errorf("nodes charge %d bytes, shard says %d", bytes, sh.bytes.Load())
	}
	return nil
}
