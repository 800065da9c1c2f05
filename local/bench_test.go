package local

import (
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"
)

type benchVal struct {
	id   int64
	name string
}

// benchItem is what the baselines store: the key for the collision check
// that local does too, and the value.
type benchItem struct {
	key string
	val benchVal
}

// benchKeys are n keys, their hashes, and a fixed random visiting order.
type benchKeys struct {
	keys   []string
	hashes []uint64
	order  []int
}

func newBenchKeys(n int) *benchKeys {
	ks := &benchKeys{keys: make([]string, n), hashes: make([]uint64, n)}
	for i := range ks.keys {
		ks.keys[i] = "user:" + strconv.Itoa(i)
		ks.hashes[i] = hashOf(ks.keys[i])
	}
	ks.order = rand.New(rand.NewSource(1)).Perm(n)
	return ks
}

// BenchmarkGetHit measures hits of local's Cache (both policies, and with a
// byte bound) next to a
// raw golang-lru/v2 lru.Cache (one global lock) and a map under a
// sync.RWMutex read lock (the floor: no recency update at all), on one hot
// key and on 100k keys visited in random order, serially and in parallel.
func BenchmarkGetHit(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"hot1", 1}, {"100k", 100_000}} {
		ks := newBenchKeys(size.n)
		b.Run(size.name+"/local-TinyLFU", func(b *testing.B) { benchLocal(b, ks, Options{Policy: TinyLFU}) })
		b.Run(size.name+"/local-TinyLFU-MaxBytes", func(b *testing.B) {
			// A byte bound that holds every key: the hit path is what differs.
			benchLocal(b, ks, Options{Policy: TinyLFU, MaxBytes: 1 << 40})
		})
		b.Run(size.name+"/local-LRU", func(b *testing.B) { benchLocal(b, ks, Options{Policy: LRU}) })
		b.Run(size.name+"/golang-lru", func(b *testing.B) { benchGolangLRU(b, ks) })
		b.Run(size.name+"/map-RWMutex", func(b *testing.B) { benchMap(b, ks) })
	}
}

// start returns a distinct starting position for each parallel goroutine.
func startAt(next *atomic.Int64, n int) int { return int(next.Add(7919)) % n }

func benchLocal(b *testing.B, ks *benchKeys, o Options) {
	n := len(ks.keys)
	o.Capacity = 2 * n
	c := New[benchVal](o)
	for i, k := range ks.keys {
		c.Set(ks.hashes[i], Entry[benchVal]{Key: k, Value: benchVal{int64(i), k}, Expire: never, Size: 100})
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i, p := 0, 0; i < b.N; i++ {
			j := ks.order[p]
			if _, ok := c.Get(ks.hashes[j], ks.keys[j], 1); !ok {
				b.Fatal("miss")
			}
			if p++; p == n {
				p = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for p := startAt(&next, n); pb.Next(); {
				j := ks.order[p]
				if _, ok := c.Get(ks.hashes[j], ks.keys[j], 1); !ok {
					b.Error("miss")
					return
				}
				if p++; p == n {
					p = 0
				}
			}
		})
	})
}

func benchGolangLRU(b *testing.B, ks *benchKeys) {
	n := len(ks.keys)
	c, err := lru.New[uint64, *benchItem](2 * n)
	if err != nil {
		b.Fatal(err)
	}
	for i, k := range ks.keys {
		c.Add(ks.hashes[i], &benchItem{k, benchVal{int64(i), k}})
	}
	get := func(h uint64, key string) (benchVal, bool) {
		if it, ok := c.Get(h); ok && it.key == key {
			return it.val, true
		}
		return benchVal{}, false
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i, p := 0, 0; i < b.N; i++ {
			j := ks.order[p]
			if _, ok := get(ks.hashes[j], ks.keys[j]); !ok {
				b.Fatal("miss")
			}
			if p++; p == n {
				p = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for p := startAt(&next, n); pb.Next(); {
				j := ks.order[p]
				if _, ok := get(ks.hashes[j], ks.keys[j]); !ok {
					b.Error("miss")
					return
				}
				if p++; p == n {
					p = 0
				}
			}
		})
	})
}

func benchMap(b *testing.B, ks *benchKeys) {
	n := len(ks.keys)
	var mu sync.RWMutex
	m := make(map[uint64]*benchItem, n)
	for i, k := range ks.keys {
		m[ks.hashes[i]] = &benchItem{k, benchVal{int64(i), k}}
	}
	get := func(h uint64, key string) (benchVal, bool) {
		mu.RLock()
		it, ok := m[h]
		mu.RUnlock()
		if ok && it.key == key {
			return it.val, true
		}
		return benchVal{}, false
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i, p := 0, 0; i < b.N; i++ {
			j := ks.order[p]
			if _, ok := get(ks.hashes[j], ks.keys[j]); !ok {
				b.Fatal("miss")
			}
			if p++; p == n {
				p = 0
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for p := startAt(&next, n); pb.Next(); {
				j := ks.order[p]
				if _, ok := get(ks.hashes[j], ks.keys[j]); !ok {
					b.Error("miss")
					return
				}
				if p++; p == n {
					p = 0
				}
			}
		})
	})
}
