package local

import (
	"math/rand"
	"strconv"
	"testing"
)

// A working set of exactly Capacity keys, read in a loop with a fill after
// every miss (what tiered does), fits whatever the shard count: the
// second pass hits every key, and the cache never holds more than
// Capacity.
func TestWorkingSetOfCapacityFits(t *testing.T) {
	const capacity = 20_000
	keys := make([]string, capacity)
	for i := range keys {
		keys[i] = "id:" + strconv.Itoa(i)
	}
	for _, pc := range policies {
		for _, shards := range []int{1, 8, 64, 256} {
			t.Run(pc.name+"/shards="+strconv.Itoa(shards), func(t *testing.T) {
				c := New[int](Options{Capacity: capacity, Shards: shards, Policy: pc.p})
				for pass := range 3 {
					misses := 0
					for i, k := range keys {
						h := hashOf(k)
						if _, ok := c.Get(h, k, 0); !ok {
							misses++
							c.SetIfUnchanged(h, ent(k, i, never), c.Token(h))
						}
					}
					if pass > 0 && misses != 0 {
						t.Fatalf("pass %d: %d of %d reads missed", pass, misses, capacity)
					}
				}
				if n := c.Len(); n != capacity {
					t.Fatalf("Len = %d, want %d", n, capacity)
				}
				checkInvariants(t, c)
			})
		}
	}
}

// keysOfShard returns n keys whose hashes fall in shard i of c.
func keysOfShard[T any](c *Cache[T], i, n int) []string {
	var out []string
	for j := 0; len(out) < n; j++ {
		k := "k" + strconv.Itoa(j)
		if c.shard(hashOf(k)) == &c.shards[i] {
			out = append(out, k)
		}
	}
	return out
}

// A store in a shard under its share, in a full cache, evicts from a shard
// over its share rather than refusing or evicting its own few items.
func TestFullCacheEvictsFromTheShardOverItsShare(t *testing.T) {
	c := New[int](Options{Capacity: 8, Shards: 2, Policy: LRU})
	crowded := keysOfShard(c, 0, 8)
	for _, k := range crowded {
		c.Set(hashOf(k), ent(k, 0, never))
	}
	if c.Len() != 8 {
		t.Fatalf("Len = %d: one shard could not take the whole capacity", c.Len())
	}
	lone := keysOfShard(c, 1, 2)
	for _, k := range lone {
		c.Set(hashOf(k), ent(k, 1, never))
	}
	for _, k := range lone {
		if _, ok := c.Get(hashOf(k), k, 0); !ok {
			t.Fatalf("%s was not kept", k)
		}
	}
	if _, ok := c.Get(hashOf(crowded[0]), crowded[0], 0); ok {
		t.Fatal("the crowded shard's least recently used key survived")
	}
	if s := c.Stats(); c.Len() != 8 || s.Evictions != 2 {
		t.Fatalf("Len = %d, Evictions = %d; want 8, 2", c.Len(), s.Evictions)
	}
	checkInvariants(t, c)
}

// After storing far more than MaxBytes, the items held times their charged
// size stay within the bound, and the charge is Size + Overhead().
func TestMaxBytesBoundsChargedBytes(t *testing.T) {
	for _, pc := range policies {
		for _, shards := range []int{1, 16} {
			t.Run(pc.name+"/shards="+strconv.Itoa(shards), func(t *testing.T) {
				const maxBytes = 64 << 10
				c := New[string](Options{Capacity: 100_000, MaxBytes: maxBytes, Shards: shards, Policy: pc.p})
				r := rand.New(rand.NewSource(2))
				sizes := map[string]int64{}
				for i := range 20_000 {
					k := "k" + strconv.Itoa(r.Intn(5000))
					size := int64(r.Intn(2000))
					if c.Set(hashOf(k), Entry[string]{Key: k, Value: k, Expire: never, Size: size}) {
						sizes[k] = size
					}
					if b := c.Bytes(); b > maxBytes {
						t.Fatalf("after %d stores Bytes = %d > MaxBytes %d", i+1, b, maxBytes)
					}
				}
				held, charged := 0, int64(0)
				for k, size := range sizes {
					if _, ok := c.Get(hashOf(k), k, 0); ok {
						held++
						charged += size + c.Overhead()
					}
				}
				if charged != c.Bytes() || charged > maxBytes || held != c.Len() {
					t.Fatalf("%d items held charge %d bytes, Bytes %d, Len %d, MaxBytes %d", held, charged, c.Bytes(), c.Len(), maxBytes)
				}
				if charged < maxBytes*3/4 {
					t.Fatalf("only %d of %d bytes used", charged, maxBytes)
				}
				checkInvariants(t, c)
			})
		}
	}
}

// An item larger than MaxBytes alone is not stored, and the key's older
// item goes: after a write, the old value must not be served.
func TestOversizedItemIsRejectedAndRemovesTheOldOne(t *testing.T) {
	c := New[string](Options{Capacity: 10, MaxBytes: 4096, Shards: 1})
	h := hashOf("k")
	if !c.Set(h, Entry[string]{Key: "k", Value: "small", Expire: never, Size: 10}) {
		t.Fatal("a small item was rejected")
	}
	if c.Set(h, Entry[string]{Key: "k", Value: "huge", Expire: never, Size: 4096}) {
		t.Fatal("an item over MaxBytes was stored")
	}
	if _, ok := c.Get(h, "k", 0); ok {
		t.Fatal("the old value survived a rejected Set")
	}
	c.Set(h, Entry[string]{Key: "k", Value: "small", Expire: never, Size: 10})
	if c.Replace(h, Entry[string]{Key: "k", Value: "huge", Expire: never, Size: 1 << 20}, c.Token(h)) {
		t.Fatal("Replace stored an item over MaxBytes")
	}
	if _, ok := c.Get(h, "k", 0); ok {
		t.Fatal("the old value survived a rejected Replace")
	}
	if s := c.Stats(); s.Rejected != 2 || s.Sets != 2 || c.Bytes() != 0 {
		t.Fatalf("Rejected = %d, Sets = %d, Bytes = %d; want 2, 2, 0", s.Rejected, s.Sets, c.Bytes())
	}
	// Without MaxBytes nothing is too large; the charge is clamped at 4 GiB.
	u := New[string](Options{Capacity: 10})
	if !u.Set(h, Entry[string]{Key: "k", Value: "huge", Expire: never, Size: 1 << 40}) || u.Bytes() != 1<<32-1 {
		t.Fatalf("unbounded cache: Bytes = %d", u.Bytes())
	}
	checkInvariants(t, c)
	checkInvariants(t, u)
}

// Replacing an item with a larger one makes room for the difference only.
func TestReplacementChargesTheDifference(t *testing.T) {
	c := New[int](Options{Capacity: 100, Shards: 1, Policy: LRU})
	c = New[int](Options{Capacity: 100, Shards: 1, Policy: LRU, MaxBytes: 10 * (c.Overhead() + 100)})
	for i := range 10 {
		k := strconv.Itoa(i)
		c.Set(hashOf(k), Entry[int]{Key: k, Expire: never, Size: 100})
	}
	if c.Len() != 10 {
		t.Fatalf("Len = %d, want 10 items of exactly the bound", c.Len())
	}
	c.Set(hashOf("9"), Entry[int]{Key: "9", Expire: never, Size: 100}) // same size: no eviction
	if s := c.Stats(); s.Evictions != 0 {
		t.Fatalf("a same-size overwrite evicted %d items", s.Evictions)
	}
	c.Set(hashOf("9"), Entry[int]{Key: "9", Expire: never, Size: 150})
	if s := c.Stats(); s.Evictions != 1 || c.Len() != 9 {
		t.Fatalf("Evictions = %d, Len = %d; want 1, 9", s.Evictions, c.Len())
	}
	if _, ok := c.Get(hashOf("0"), "0", 0); ok {
		t.Fatal("the least recently used item was not the one evicted")
	}
	checkInvariants(t, c)
}

// Overhead's documentation quotes the figure for a 72-byte value (the
// benchmarks' User): the node is 128 bytes (one size class, no waste) plus
// the index's 16.
func TestOverheadOfA72ByteValue(t *testing.T) {
	if o := New[[72]byte](Options{}).Overhead(); o != 144 {
		t.Fatalf("Overhead = %d, documented as 144", o)
	}
}
