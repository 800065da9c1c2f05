package local

import (
	"math"
	"math/rand"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

const never = math.MaxInt64 // an expiry that is never reached

func hashOf(key string) uint64 { return xxhash.Sum64String(key) }

// ent is an Entry of size 0.
func ent[T any](key string, val T, expire int64) Entry[T] {
	return Entry[T]{Key: key, Value: val, Expire: expire}
}

var policies = []struct {
	name string
	p    Policy
}{{"TinyLFU", TinyLFU}, {"LRU", LRU}}

func TestHitMiss(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[string](Options{Capacity: 100, Policy: pc.p})
			if v, ok := c.Get(hashOf("a"), "a", 0); ok {
				t.Fatalf("Get on empty cache = %q, true", v)
			}
			c.Set(hashOf("a"), ent("a", "va", never))
			c.Set(hashOf("b"), ent("b", "vb", never))
			for _, k := range []string{"a", "b", "a"} {
				if v, ok := c.Get(hashOf(k), k, 0); !ok || v != "v"+k {
					t.Fatalf("Get(%q) = %q, %v; want %q, true", k, v, ok, "v"+k)
				}
			}
			c.Set(hashOf("a"), ent("a", "va2", never)) // overwrite in place
			if v, ok := c.Get(hashOf("a"), "a", 0); !ok || v != "va2" {
				t.Fatalf("Get after overwrite = %q, %v", v, ok)
			}
			if n := c.Len(); n != 2 {
				t.Fatalf("Len = %d, want 2", n)
			}
			want := Stats{Hits: 4, Misses: 1, Sets: 3}
			if s := c.Stats(); s != want {
				t.Fatalf("Stats = %+v, want %+v", s, want)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	c := New[int](Options{Capacity: 10})
	h := hashOf("k")
	c.Set(h, ent("k", 1, 100))
	if _, ok := c.Get(h, "k", 99); !ok {
		t.Fatal("miss before expiry")
	}
	if _, ok := c.Get(h, "k", 100); ok {
		t.Fatal("hit at expiry: want now < expire")
	}
	if n := c.Len(); n != 0 {
		t.Fatalf("expired item not removed: Len = %d", n)
	}
	if _, ok := c.Get(h, "k", 0); ok {
		t.Fatal("hit after the expired item was removed")
	}
	s := c.Stats()
	if s.Expired != 1 || s.Misses != 2 || s.Hits != 1 {
		t.Fatalf("Stats = %+v, want Expired 1, Misses 2, Hits 1", s)
	}
}

func TestDelete(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[int](Options{Capacity: 10, Policy: pc.p})
			h := hashOf("k")
			c.Set(h, ent("k", 1, never))
			c.Get(h, "k", 0) // TinyLFU: recorded, promoted to protected at the next drain
			if !c.Delete(h, "k") {
				t.Fatal("Delete of a present key = false")
			}
			if _, ok := c.Get(h, "k", 0); ok {
				t.Fatal("hit after Delete")
			}
			if c.Delete(h, "k") {
				t.Fatal("Delete of an absent key = true")
			}
			if s := c.Stats(); s.Deletes != 1 || c.Len() != 0 {
				t.Fatalf("Deletes = %d, Len = %d; want 1, 0", s.Deletes, c.Len())
			}
		})
	}
}

func TestPurge(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[int](Options{Capacity: 1000, Shards: 8, Policy: pc.p})
			for i := 0; i < 500; i++ {
				k := strconv.Itoa(i)
				c.Set(hashOf(k), ent(k, i, never))
			}
			c.Purge()
			if n := c.Len(); n != 0 {
				t.Fatalf("Len after Purge = %d", n)
			}
			for i := 0; i < 500; i++ {
				k := strconv.Itoa(i)
				if _, ok := c.Get(hashOf(k), k, 0); ok {
					t.Fatalf("hit for %q after Purge", k)
				}
			}
			if s := c.Stats(); s.Evictions != 0 || s.Deletes != 0 {
				t.Fatalf("Purge counted as Evictions/Deletes: %+v", s)
			}
		})
	}
}

func TestCapacityAndEvictions(t *testing.T) {
	for _, pc := range policies {
		for _, shards := range []int{0, 1, 8} {
			pc, shards := pc, shards
			t.Run(pc.name+"/shards="+strconv.Itoa(shards), func(t *testing.T) {
				const capacity, inserted = 256, 5000
				c := New[int](Options{Capacity: capacity, Shards: shards, Policy: pc.p})
				for i := 0; i < inserted; i++ {
					k := strconv.Itoa(i)
					c.Set(hashOf(k), ent(k, i, never))
					if i%7 == 0 { // some second accesses, so TinyLFU uses every list
						c.Get(hashOf(k), k, 0)
					}
					if n := c.Len(); n > capacity {
						t.Fatalf("Len = %d > Capacity %d after %d inserts", n, capacity, i+1)
					}
				}
				// The bound is global: however the keys fall on the shards,
				// a full cache holds exactly Capacity items.
				n := c.Len()
				if n != capacity {
					t.Fatalf("Len = %d, want Capacity %d", n, capacity)
				}
				s := c.Stats()
				if s.Sets != inserted || s.Evictions != uint64(inserted-n) {
					t.Fatalf("Sets = %d, Evictions = %d; want %d, %d", s.Sets, s.Evictions, inserted, inserted-n)
				}
			})
		}
	}
}

func TestLRUOrder(t *testing.T) {
	c := New[int](Options{Capacity: 3, Shards: 1, Policy: LRU})
	for _, k := range []string{"a", "b", "c"} {
		c.Set(hashOf(k), ent(k, 0, never))
	}
	c.Get(hashOf("a"), "a", 0) // b is now the least recently used
	c.Set(hashOf("d"), ent("d", 0, never))
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok := c.Get(hashOf(k), k, 0); ok != want {
			t.Errorf("Get(%q) ok = %v, want %v", k, ok, want)
		}
	}
}

// A hot set that was accessed twice survives a one-pass scan of many cold
// keys under TinyLFU, and is flushed by it under plain LRU.
func TestScanResistance(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[int](Options{Capacity: 100, Shards: 1, Policy: pc.p})
			hot := make([]string, 10)
			for i := range hot {
				hot[i] = "hot" + strconv.Itoa(i)
				c.Set(hashOf(hot[i]), ent(hot[i], i, never))
				c.Get(hashOf(hot[i]), hot[i], 0)
			}
			for i := 0; i < 1000; i++ {
				k := "cold" + strconv.Itoa(i)
				c.Set(hashOf(k), ent(k, i, never))
			}
			survived := 0
			for _, k := range hot {
				if _, ok := c.Get(hashOf(k), k, 0); ok {
					survived++
				}
			}
			switch pc.p {
			case TinyLFU:
				if survived != len(hot) {
					t.Fatalf("TinyLFU: %d of %d hot keys survived the scan", survived, len(hot))
				}
			case LRU:
				if survived != 0 {
					t.Fatalf("LRU: %d hot keys survived a scan 10x the capacity", survived)
				}
			}
			if n := c.Len(); n != 100 {
				t.Fatalf("Len = %d, want 100", n)
			}
		})
	}
}

// The sketch remembers how often a key was requested after its item is
// gone (2Q's ghost list did the same for one access): a key read often,
// deleted and stored again is admitted over the cold keys of a scan, which
// LRU would let flush it.
func TestFrequencyOutlivesTheItem(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[int](Options{Capacity: 8, Shards: 1, Policy: pc.p})
			h := hashOf("0")
			c.Set(h, ent("0", 0, never))
			for range 5 {
				c.Get(h, "0", 0)
			}
			c.Delete(h, "0")
			for i := range 8 {
				k := "warm" + strconv.Itoa(i)
				c.Set(hashOf(k), ent(k, i, never))
			}
			c.Set(h, ent("0", 0, never))
			for i := range 100 {
				k := "cold" + strconv.Itoa(i)
				c.Set(hashOf(k), ent(k, i, never))
			}
			_, ok := c.Get(h, "0", 0)
			if want := pc.p == TinyLFU; ok != want {
				t.Fatalf("re-stored frequent key present after a scan = %v, want %v", ok, want)
			}
		})
	}
}

// Two keys forced onto one hash: neither ever returns the other's value.
func TestCollision(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[string](Options{Capacity: 10, Policy: pc.p})
			const h = 42
			c.Set(h, ent("a", "va", never))
			if v, ok := c.Get(h, "b", 0); ok {
				t.Fatalf("Get(b) returned a's value %q", v)
			}
			if v, ok := c.Get(h, "a", 0); !ok || v != "va" {
				t.Fatalf("Get(a) = %q, %v after a collision miss", v, ok)
			}
			if c.Delete(h, "b") {
				t.Fatal("Delete(b) removed a's item")
			}
			if _, ok := c.Get(h, "a", 0); !ok {
				t.Fatal("Delete(b) removed a's item")
			}
			c.Set(h, ent("b", "vb", never)) // b replaces a: one item per hash
			if v, ok := c.Get(h, "a", 0); ok {
				t.Fatalf("Get(a) returned b's value %q", v)
			}
			if v, ok := c.Get(h, "b", 0); !ok || v != "vb" {
				t.Fatalf("Get(b) = %q, %v", v, ok)
			}
			if n := c.Len(); n != 1 {
				t.Fatalf("Len = %d, want 1", n)
			}
			c.Set(h, ent("a", "va", 10)) // an expired colliding item is not "expired" for b
			if _, ok := c.Get(h, "b", 20); ok {
				t.Fatal("Get(b) hit a's item")
			}
			s := c.Stats()
			if s.Collisions != 3 || s.Expired != 0 || s.Misses != 3 || s.Hits != 3 {
				t.Fatalf("Stats = %+v, want Collisions 3, Misses 3, Hits 3, Expired 0", s)
			}
		})
	}
}

// sameShard returns a hash other than h in h's shard, and one in another shard.
func sameShard[T any](t *testing.T, c *Cache[T], h uint64) (same, other uint64) {
	t.Helper()
	var okSame, okOther bool
	for i := uint64(1); i < 1<<20 && !(okSame && okOther); i++ {
		x := h + i
		if c.shard(x) == c.shard(h) {
			same, okSame = x, true
		} else {
			other, okOther = x, true
		}
	}
	if !okSame || !okOther {
		t.Fatal("no hashes found in the same and in another shard")
	}
	return same, other
}

func TestSetIfUnchanged(t *testing.T) {
	c := New[string](Options{Capacity: 1024, Shards: 8})
	h := hashOf("k")
	same, other := sameShard(t, c, h)

	tok := c.Token(h)
	if !c.SetIfUnchanged(h, ent("k", "v1", never), tok) {
		t.Fatal("SetIfUnchanged with a fresh token refused")
	}
	if c.Token(h) != tok {
		t.Fatal("SetIfUnchanged bumped the generation")
	}
	if !c.SetIfUnchanged(same, ent("s", "vs", never), tok) {
		t.Fatal("a fill refused another fill of the same shard")
	}
	if v, ok := c.Get(h, "k", 0); !ok || v != "v1" {
		t.Fatalf("Get = %q, %v after SetIfUnchanged", v, ok)
	}

	// Delete of ANY key of the shard, even an absent one, refuses older tokens.
	tok = c.Token(h)
	tokOther := c.Token(other)
	if c.Delete(same, "absent") {
		t.Fatal("Delete of an absent key = true")
	}
	if c.SetIfUnchanged(h, ent("k", "old", never), tok) {
		t.Fatal("SetIfUnchanged accepted after a Delete in the shard")
	}
	if v, _ := c.Get(h, "k", 0); v != "v1" {
		t.Fatalf("refused fill changed the value to %q", v)
	}
	if !c.SetIfUnchanged(other, ent("o", "vo", never), tokOther) {
		t.Fatal("a Delete in another shard refused the fill")
	}

	// Set bumps the generation.
	tok = c.Token(h)
	c.Set(same, ent("s", "vs2", never))
	if c.Token(h) == tok {
		t.Fatal("Set did not bump the generation")
	}
	if c.SetIfUnchanged(h, ent("k", "old", never), tok) {
		t.Fatal("SetIfUnchanged accepted after a Set in the shard")
	}

	// Purge bumps every shard.
	tok, tokOther = c.Token(h), c.Token(other)
	c.Purge()
	if c.SetIfUnchanged(h, ent("k", "old", never), tok) || c.SetIfUnchanged(other, ent("o", "old", never), tokOther) {
		t.Fatal("SetIfUnchanged accepted after Purge")
	}
	if _, ok := c.Get(h, "k", 0); ok {
		t.Fatal("refused fill was stored")
	}
	if s := c.Stats(); s.Refused != 4 || s.Sets != 4 {
		t.Fatalf("Refused = %d, Sets = %d; want 4, 4", s.Refused, s.Sets)
	}
}

func TestShardCount(t *testing.T) {
	def := 1
	for def < 4*runtime.GOMAXPROCS(0) {
		def *= 2
	}
	for _, tc := range []struct{ capacity, shards, want int }{
		{0, 0, shardCount(defaultCapacity, 0)},
		{10, 0, 1},
		{127, 0, 1},
		{128, 0, min(2, def)},
		{1 << 30, 0, def},
		{1000, 3, 4},
		{1000, 8, 8},
		{1000, 9, 16},
		{2, 5, 2},
		{1 << 30, 1 << 40, maxShards},
		{10, -3, 1},
	} {
		c := New[int](Options{Capacity: tc.capacity, Shards: tc.shards})
		if got := c.Shards(); got != tc.want {
			t.Errorf("Capacity %d, Shards %d: got %d shards, want %d", tc.capacity, tc.shards, got, tc.want)
		}
	}
	if got := shardCount(defaultCapacity, 0); got != min(def, 128) {
		t.Errorf("default shards = %d, want %d", got, min(def, 128))
	}
}

func TestZeroOptionsAndUnknownPolicy(t *testing.T) {
	c := New[int](Options{Policy: Policy(99)})
	for i := 0; i < 2*defaultCapacity; i++ {
		k := strconv.Itoa(i)
		c.Set(hashOf(k), ent(k, i, never))
	}
	if n := c.Len(); n > defaultCapacity || n < defaultCapacity*3/4 {
		t.Fatalf("Len = %d, want about the default capacity %d", n, defaultCapacity)
	}
}

func TestShardPadding(t *testing.T) {
	for name, size := range map[string]uintptr{
		"int":      unsafe.Sizeof(shard[int]{}),
		"string":   unsafe.Sizeof(shard[string]{}),
		"[64]byte": unsafe.Sizeof(shard[[64]byte]{}),
		"stripe":   unsafe.Sizeof(stripe[int]{}),
	} {
		if size%cacheLine != 0 {
			t.Errorf("shard[%s] is %d bytes, not a multiple of %d", name, size, cacheLine)
		}
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[string](Options{Capacity: 1000, Policy: pc.p})
			h := hashOf("key")
			c.Set(h, ent("key", "value", never))
			c.Get(h, "key", 0)
			if a := testing.AllocsPerRun(1000, func() {
				if _, ok := c.Get(h, "key", 0); !ok {
					t.Fatal("miss")
				}
			}); a != 0 {
				t.Errorf("Get hit: %v allocs/op, want 0", a)
			}
			if a := testing.AllocsPerRun(1000, func() { c.Get(h, "other", 0) }); a != 0 {
				t.Errorf("Get collision miss: %v allocs/op, want 0", a)
			}
			if a := testing.AllocsPerRun(1000, func() { c.Get(h+1, "key", 0) }); a != 0 {
				t.Errorf("Get miss: %v allocs/op, want 0", a)
			}
			if a := testing.AllocsPerRun(1000, func() {
				if c.Ref(h, "key", 0) == nil {
					t.Fatal("miss")
				}
			}); a != 0 {
				t.Errorf("Ref hit: %v allocs/op, want 0", a)
			}
			// An overwrite stores a new immutable item (Ref's pointers stay
			// valid): exactly one allocation.
			if a := testing.AllocsPerRun(1000, func() { c.Set(h, ent("key", "value", never)) }); a != 1 {
				t.Errorf("Set overwrite: %v allocs/op, want 1", a)
			}
		})
	}
}

// Many goroutines mix every operation on a small set of keys that are forced
// onto fewer hashes, so collisions, evictions and invalidations all race.
// Under -race this checks locking; in any mode it checks that a hit always
// returns a value written for that key, and that the counters add up.
func TestConcurrent(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			const (
				workers  = 16
				ops      = 3000
				keys     = 300
				capacity = 64
			)
			c := New[string](Options{Capacity: capacity, Shards: 4, Policy: pc.p})
			hash := func(i int) uint64 { return hashOf(strconv.Itoa(i % 97)) } // 300 keys on 97 hashes
			start := make(chan struct{})
			var wg sync.WaitGroup
			var gets [workers]int
			errs := make(chan string, workers)
			for w := 0; w < workers; w++ {
				w := w
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewSource(int64(w)))
					<-start
					for i := 0; i < ops; i++ {
						n := r.Intn(keys)
						k, h := "k"+strconv.Itoa(n), hash(n)
						switch r.Intn(10) {
						case 0, 1:
							tok := c.Token(h)
							c.SetIfUnchanged(h, ent(k, k+"#fill", never), tok)
						case 2:
							c.Set(h, ent(k, k+"#set", int64(i+100))) // expires within this run
						case 3:
							c.Delete(h, k)
						case 4:
							if r.Intn(50) == 0 {
								c.Purge()
							} else if c.Len() > capacity {
								errs <- "Len over capacity"
								return
							}
						case 5:
							c.Stats()
						default:
							gets[w]++
							if v, ok := c.Get(h, k, int64(i)); ok && !strings.HasPrefix(v, k+"#") {
								errs <- "Get(" + k + ") returned " + v
								return
							}
						}
					}
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			total := 0
			for _, g := range gets {
				total += g
			}
			s := c.Stats()
			if s.Hits+s.Misses != uint64(total) {
				t.Fatalf("Hits+Misses = %d, want %d Gets", s.Hits+s.Misses, total)
			}
			t.Logf("%+v", s)
			if s.Hits == 0 || s.Collisions == 0 {
				t.Fatalf("test exercised too little: %+v", s)
			}
			if n := c.Len(); n > capacity {
				t.Fatalf("Len = %d > %d", n, capacity)
			}
		})
	}
}

func TestReplace(t *testing.T) {
	for _, p := range []Policy{TinyLFU, LRU} {
		c := New[int](Options{Capacity: 128, Shards: 1, Policy: p})
		h := hashOf("k")
		tok := c.Token(h)
		if !c.Replace(h, ent("k", 1, 100), tok) {
			t.Fatalf("policy %d: Replace with a current token refused", p)
		}
		if v, ok := c.Get(h, "k", 0); !ok || v != 1 {
			t.Fatalf("policy %d: Get after Replace = %d, %v", p, v, ok)
		}
		// Replace bumps: a fill that took the token before it is refused.
		if c.SetIfUnchanged(h, ent("k", 9, 100), tok) {
			t.Fatalf("policy %d: a fill older than Replace landed", p)
		}
		// A stale token removes the key instead of storing.
		stale := c.Token(h)
		c.Delete(hashOf("other"), "other")
		if c.Replace(h, ent("k", 2, 100), stale) {
			t.Fatalf("policy %d: Replace with a stale token stored", p)
		}
		if _, ok := c.Get(h, "k", 0); ok {
			t.Fatalf("policy %d: Replace with a stale token left the old value", p)
		}
	}
}

func TestRefStaysValidAfterOverwrite(t *testing.T) {
	c := New[string](Options{Capacity: 16, Shards: 1})
	h := hashOf("k")
	c.Set(h, ent("k", "old", never))
	p := c.Ref(h, "k", 0)
	if p == nil || *p != "old" {
		t.Fatalf("Ref = %v", p)
	}
	c.Set(h, ent("k", "new", never))
	if *p != "old" {
		t.Fatalf("a held Ref changed under an overwrite: %q", *p)
	}
	if q := c.Ref(h, "k", 0); q == nil || *q != "new" {
		t.Fatalf("Ref after overwrite = %v", q)
	}
	if c.Ref(h, "other", 0) != nil || c.Ref(h, "k", never) != nil {
		t.Fatal("Ref returned a colliding or expired item")
	}
}

func TestPeekLeavesNoTrace(t *testing.T) {
	c := New[int](Options{Capacity: 8})
	c.Set(1, Entry[int]{Key: "a", Value: 7, Expire: 100})
	before := c.Stats()
	if p := c.Peek(1, "a", 10); p == nil || *p != 7 {
		t.Fatalf("Peek = %v", p)
	}
	if c.Peek(1, "b", 10) != nil || c.Peek(1, "a", 100) != nil || c.Peek(2, "a", 10) != nil {
		t.Fatal("Peek found another key, an expired item or another hash")
	}
	if after := c.Stats(); after != before {
		t.Fatalf("Peek changed the stats: %+v -> %+v", before, after)
	}
	if c.Len() != 1 {
		t.Fatal("Peek of an expired item removed it")
	}
}
