package bench

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/tiered"
)

// Scenario 6: heap bytes per cached User. Keys and the users' strings are
// allocated before the measurement and shared, so B/entry is what the cache
// itself costs: its index, its recency list and the 72-byte User it copies.

const (
	memEntries       = 1_000_000
	memTieredEntries = 100_000 // filled through Redis, so fewer
)

// heapDelta returns the live heap that build adds and keeps, and what build
// returned, reachable until then.
func heapDelta(build func() any) (uint64, any) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	return after.HeapAlloc - before.HeapAlloc, v
}

var memKeys = sync.OnceValue(func() []string { return ids("u", memEntries) })

// BenchmarkMemory reports B/entry; ns/op is the time to fill the cache.
// Run it with -benchtime 1x: one fill per report is enough.
func BenchmarkMemory(b *testing.B) {
	u := newUser(1)
	caches := []struct {
		name string
		fill func(keys []string) (n int, c any)
	}{
		{"tiercache-local", func(keys []string) (int, any) {
			// Capacity above the entry count, as for every row.
			c := local.New[User](local.Options{Capacity: 2 * len(keys)})
			for _, k := range keys {
				c.Set(xxhash.Sum64String(k), local.Entry[User]{Key: k, Value: u, Expire: math.MaxInt64})
			}
			return c.Len(), c
		}},
		{"golang-lru", func(keys []string) (int, any) {
			c, _ := lru.New[string, User](2 * len(keys))
			for _, k := range keys {
				c.Add(k, u)
			}
			return c.Len(), c
		}},
		{"otter", func(keys []string) (int, any) {
			c, _ := otter.New(&otter.Options[string, User]{MaximumSize: 2 * len(keys)})
			for _, k := range keys {
				c.Set(k, u)
			}
			c.CleanUp()
			return c.EstimatedSize(), c
		}},
		{"map", func(keys []string) (int, any) {
			m := make(map[string]User)
			for _, k := range keys {
				m[k] = u
			}
			return len(m), m
		}},
	}
	for _, c := range caches {
		c := c
		b.Run(fmt.Sprintf("%dk/%s", memEntries/1000, c.name), func(b *testing.B) {
			keys := memKeys()
			var perEntry float64
			for i := 0; i < b.N; i++ {
				var n int
				d, _ := heapDelta(func() any {
					var v any
					n, v = c.fill(keys)
					return v
				})
				if n < len(keys)*99/100 {
					b.Fatalf("%s holds %d of %d entries", c.name, n, len(keys))
				}
				perEntry = float64(d) / float64(n)
			}
			b.ReportMetric(perEntry, "B/entry")
		})
	}
	// The real tiered Keyspace, whose local entries carry more than the
	// value (group version, freshness and refresh times). Filled through
	// GetMany and a BatchLoader, so through Redis: 100k entries, not 1M.
	b.Run(fmt.Sprintf("%dk/tiercache-Keyspace", memTieredEntries/1000), func(b *testing.B) {
		c, err := newTiered()
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		keys := memKeys()[:memTieredEntries]
		var perEntry float64
		for i := 0; i < b.N; i++ {
			var n int
			d, _ := heapDelta(func() any {
				ks, err := tiered.NewKeyspace(c, tiered.Config[User]{
					Name: fmt.Sprintf("mem%d", i), TTL: hourTTL, LocalTTL: hourTTL, LocalCapacity: 2 * len(keys),
					BatchLoader: func(_ context.Context, ids []string) (map[string]User, error) {
						m := make(map[string]User, len(ids))
						for _, id := range ids {
							m[id] = u
						}
						return m, nil
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				for j := 0; j < len(keys); j += 1000 {
					if _, err := ks.GetMany(ctx, keys[j:j+1000]); err != nil {
						b.Fatal(err)
					}
				}
				n = ks.Stats().LocalEntries
				return ks
			})
			if n < len(keys)*99/100 {
				b.Fatalf("keyspace holds %d of %d entries", n, len(keys))
			}
			perEntry = float64(d) / float64(n)
		}
		b.ReportMetric(perEntry, "B/entry")
	})
}
