package local

import (
	"math/rand"
	"testing"
)

func TestSWAR(t *testing.T) {
	w := uint64(emptyTags) | 0x85<<8 | 0x85<<24 | 0x86<<32 | tagDeleted<<40
	if got, want := matches(w, 0x85), uint64(0x80<<8|0x80<<24); got&want != want {
		t.Fatalf("matches(0x85) = %#x, want bits %#x", got, want)
	}
	if matches(w, 0x87) != 0 {
		t.Fatal("matches a tag that is absent")
	}
	if !hasEmpty(w) {
		t.Fatal("hasEmpty = false with empty slots")
	}
	full := uint64(emptyTags)
	for i := range bucketSlots {
		full |= 0x90 << (8 * i)
	}
	if hasEmpty(full) || hasEmpty(full&^(0xff<<16)|tagDeleted<<16) {
		t.Fatal("hasEmpty = true for a bucket with no empty slot")
	}
	if matches(full, 0x81) != 0 {
		t.Fatal("the spare byte or other tags matched")
	}
}

// The index against a map: puts, replacements and removes of hashes that
// share home buckets and tags, through rebuilds that grow and shrink it.
func TestIndexAgainstMap(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	var x index[int]
	x.reset()
	model := map[uint64]*node[int]{}
	// Few distinct tags and many hashes per tag, so probes cross buckets.
	hashes := make([]uint64, 3000)
	for i := range hashes {
		hashes[i] = uint64(r.Intn(4))<<57 | uint64(r.Int63n(1<<40))
	}
	for step := range 200_000 {
		h := hashes[r.Intn(len(hashes))]
		switch op := r.Intn(10); {
		case op < 5:
			n := &node[int]{hash: h, val: step}
			if old := x.put(n); old != model[h] {
				t.Fatalf("step %d: put replaced %v, want %v", step, old, model[h])
			}
			model[h] = n
		case op < 8:
			if n := model[h]; n != nil {
				if !x.remove(n) {
					t.Fatalf("step %d: remove of a stored node = false", step)
				}
				delete(model, h)
			} else if x.remove(&node[int]{hash: h}) {
				t.Fatalf("step %d: remove of an absent hash = true", step)
			}
		default:
			if got := x.find(h); got != model[h] {
				t.Fatalf("step %d: find = %v, want %v", step, got, model[h])
			}
		}
		if step%50_000 == 0 || step == 199_999 {
			tb := x.table.Load()
			if tb.live != len(model) || tb.used*maxLoadDen > len(tb.buckets)*bucketSlots*maxLoadNum {
				t.Fatalf("live %d for %d nodes, used %d of %d slots", tb.live, len(model), tb.used, len(tb.buckets)*bucketSlots)
			}
			for h, n := range model {
				if x.find(h) != n {
					t.Fatalf("find(%#x) lost its node", h)
				}
			}
		}
	}
	// Emptied, the table shrinks back to one bucket.
	for h, n := range model {
		x.remove(n)
		delete(model, h)
	}
	if n := len(x.table.Load().buckets); n != 1 {
		t.Fatalf("empty index keeps %d buckets", n)
	}
}

// A reader on a table that a rebuild replaced still sees the nodes it held.
func TestIndexOldTableStaysReadable(t *testing.T) {
	var x index[int]
	x.reset()
	first := &node[int]{hash: 12345}
	x.put(first)
	old := x.table.Load()
	for i := range 100 {
		x.put(&node[int]{hash: uint64(i+1) << 20})
	}
	if x.table.Load() == old {
		t.Fatal("100 puts did not rebuild a one-bucket table")
	}
	if old.find(12345) != first || x.find(12345) != first {
		t.Fatal("a node was lost by the rebuild, or by the old table")
	}
}
