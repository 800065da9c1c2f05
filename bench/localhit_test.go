package bench

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-redis/cache/v9"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"
	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/tiered"
)

// Scenario 1: local hits of a typed struct. Every row returns a User that
// the caller can use; rows that keep bytes (go-redis/cache, rueidis) decode
// them on every hit, as their users must.

const (
	hitKeys     = 100_000
	hitCapacity = 200_000 // room for every key in every cache, sharded or not
)

// hitFixture holds every cache of scenario 1, warmed with the same users.
type hitFixture struct {
	ids    []string // "u0".."u99999"
	order  []string // ids in a fixed random order
	c      *tiered.Client
	ks     *tiered.Keyspace[User]
	lru    *lru.Cache[string, User]
	otter  *otter.Cache[string, User]
	mu     sync.RWMutex
	m      map[string]User
	gc     *cache.Cache
	rd     rueidis.Client
	prefix map[string][]string // Redis key prefix -> order with the prefix
}

var hitFx lazy[*hitFixture]

func hitFixtureGet(b *testing.B) *hitFixture {
	return hitFx.get(b, buildHitFixture)
}

func idNum(id string) int {
	n, _ := strconv.Atoi(id[1:])
	return n
}

func buildHitFixture() (*hitFixture, error) {
	f := &hitFixture{ids: ids("u", hitKeys), prefix: map[string][]string{}}
	f.order = shuffled(f.ids)
	for _, p := range []string{"gc:", "rd:"} {
		s := make([]string, len(f.order))
		for i, id := range f.order {
			s[i] = p + id
		}
		f.prefix[p] = s
	}

	// Ours: warmed through GetMany and a BatchLoader, i.e. filled in Redis
	// and locally exactly as a service's first reads would.
	var err error
	if f.c, f.ks, err = newHitKeyspace(f.ids, nil); err != nil {
		return nil, err
	}

	f.lru, _ = lru.New[string, User](hitCapacity)
	if f.otter, err = otter.New(&otter.Options[string, User]{MaximumSize: hitCapacity}); err != nil {
		return nil, err
	}
	f.m = make(map[string]User, hitKeys)
	for i, id := range f.ids {
		u := newUser(i)
		f.lru.Add(id, u)
		f.otter.Set(id, u)
		f.m[id] = u
	}

	// go-redis/cache: msgpack (s2-compressed past 64 bytes) in Redis and in
	// its local TinyLFU. The local tier is filled directly with the bytes a
	// Get would have put there, to save 100k round trips.
	rdb := newRedis()
	tlfu := cache.NewTinyLFU(hitCapacity, hourTTL)
	f.gc = cache.New(&cache.Options{Redis: rdb, LocalCache: tlfu})
	pipe := rdb.Pipeline()
	for i, id := range f.ids {
		bs, err := f.gc.Marshal(newUser(i))
		if err != nil {
			return nil, err
		}
		pipe.Set(ctx, "gc:"+id, bs, hourTTL)
		tlfu.Set("gc:"+id, bs)
		if pipe.Len() == 1000 {
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, err
			}
		}
	}

	// rueidis: JSON in Redis, read once with DoMultiCache so that every key
	// is in its client-side cache, tracked by the server for invalidation.
	if f.rd, err = newRueidis(); err != nil {
		return nil, err
	}
	for i := 0; i < len(f.ids); i += 1000 {
		sets := make(rueidis.Commands, 0, 1000)
		reads := make([]rueidis.CacheableTTL, 0, 1000)
		for j := i; j < i+1000; j++ {
			js, _ := json.Marshal(newUser(j))
			key := "rd:" + f.ids[j]
			sets = append(sets, f.rd.B().Set().Key(key).Value(rueidis.BinaryString(js)).Build())
			reads = append(reads, rueidis.CT(f.rd.B().Get().Key(key).Cache(), hourTTL))
		}
		for _, r := range f.rd.DoMulti(ctx, sets...) {
			if err := r.Error(); err != nil {
				return nil, err
			}
		}
		for _, r := range f.rd.DoMultiCache(ctx, reads...) {
			if err := r.Error(); err != nil {
				return nil, err
			}
		}
	}
	return f, nil
}

// newHitKeyspace returns a Client (with obs, if not nil) and its keyspace of
// users holding every id locally.
func newHitKeyspace(ids []string, obs tiered.Observer) (*tiered.Client, *tiered.Keyspace[User], error) {
	c, err := newObservedTiered(obs)
	if err != nil {
		return nil, nil, err
	}
	ks, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name: "users", TTL: hourTTL, LocalTTL: hourTTL, LocalCapacity: hitCapacity,
		BatchLoader: loadUsers,
	})
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i < len(ids); i += 1000 {
		got, err := ks.GetMany(ctx, ids[i:i+1000])
		if err != nil || len(got) != 1000 {
			return nil, nil, fmt.Errorf("warm tiered: %d values, %v", len(got), err)
		}
	}
	if n := ks.Stats().LocalEntries; n != len(ids) {
		return nil, nil, fmt.Errorf("tiered holds %d local entries after warm-up, want %d; stats %+v", n, len(ids), ks.Stats())
	}
	return c, ks, nil
}

func newRueidis() (rueidis.Client, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{redisAddr}})
	if err != nil {
		return nil, err
	}
	onClose(c.Close)
	return c, nil
}

// BenchmarkLocalHit reads one hot key, and 100k keys in a fixed random order,
// from caches that hold them all.
func BenchmarkLocalHit(b *testing.B) {
	for _, ws := range []string{"hot", "100k"} {
		for _, mode := range []string{"serial", "parallel"} {
			ws, par := ws, mode == "parallel"
			keysOf := func(f *hitFixture, prefix string) []string {
				s := f.order
				if prefix != "" {
					s = f.prefix[prefix]
				}
				if ws == "hot" {
					return s[:1]
				}
				return s
			}
			pre := ws + "/" + mode + "/"
			// tiercache, then the same with an observer attached (one
			// hit in 64 timed and recorded): same keys, same run.
			b.Run(pre+"tiercache", func(b *testing.B) {
				f := hitFixtureGet(b)
				runTieredReads(b, f.c, f.ks, keysOf(f, ""), par)
			})
			for _, which := range []string{"prom", "otel"} {
				b.Run(pre+"tiercache-"+which, func(b *testing.B) {
					o := observedFixtureGet(b, which)
					runTieredReads(b, o.c, o.ks, keysOf(hitFixtureGet(b), ""), par)
				})
			}
			b.Run(pre+"golang-lru", func(b *testing.B) {
				f := hitFixtureGet(b)
				runReads(b, keysOf(f, ""), par, nil, func(id string) int64 {
					u, _ := f.lru.Get(id)
					return u.ID
				})
			})
			b.Run(pre+"otter", func(b *testing.B) {
				f := hitFixtureGet(b)
				runReads(b, keysOf(f, ""), par, nil, func(id string) int64 {
					u, _ := f.otter.GetIfPresent(id)
					return u.ID
				})
			})
			b.Run(pre+"map-RWMutex", func(b *testing.B) {
				f := hitFixtureGet(b)
				runReads(b, keysOf(f, ""), par, nil, func(id string) int64 {
					f.mu.RLock()
					u := f.m[id]
					f.mu.RUnlock()
					return u.ID
				})
			})
			b.Run(pre+"go-redis-cache", func(b *testing.B) {
				f := hitFixtureGet(b)
				runReads(b, keysOf(f, "gc:"), par, nil, func(key string) int64 {
					var u User
					if err := f.gc.Get(ctx, key, &u); err != nil {
						panic(err)
					}
					return u.ID
				})
			})
			b.Run(pre+"rueidis-DoCache", func(b *testing.B) {
				f := hitFixtureGet(b)
				runReads(b, keysOf(f, "rd:"), par, nil, func(key string) int64 {
					bs, err := f.rd.DoCache(ctx, f.rd.B().Get().Key(key).Cache(), hourTTL).AsBytes()
					if err != nil {
						panic(err)
					}
					var u User
					if err := json.Unmarshal(bs, &u); err != nil {
						panic(err)
					}
					return u.ID
				})
			})
		}
	}
}

// runTieredReads times tiercache's Get with runReads and reports
// local-miss/op.
func runTieredReads(b *testing.B, c *tiered.Client, ks *tiered.Keyspace[User], keys []string, parallel bool) {
	if err := waitReady(c); err != nil {
		b.Fatal(err)
	}
	var before tiered.Stats
	runReads(b, keys, parallel, func() { before = ks.Stats() }, func(id string) int64 {
		u, _ := ks.Get(ctx, id)
		return u.ID
	})
	b.StopTimer()
	// A local miss is a Redis round trip, so this row only measures local
	// hits if local-miss/op is 0. The fixture checked that every key is
	// local; misses here mean the bus stopped proving it was alive for
	// BusTimeout (an overloaded machine), and they slow tiercache's row.
	miss := float64(ks.Stats().LocalMisses-before.LocalMisses) / float64(b.N)
	b.ReportMetric(miss, "local-miss/op")
	if miss > 0.001 {
		b.Logf("%.2f%% of reads missed locally: the bus was not Ready", 100*miss)
	}
}

// runReads checks that get returns the right user for keys ending in "u<n>",
// calls begin (if any: a stats snapshot), then times get over keys in order.
// In parallel, goroutine g of P reads keys g, g+P, g+2P, ...: no two
// goroutines read the same key at once, so no row gains from coalescing.
// Every row pays the same indirect call.
func runReads(b *testing.B, keys []string, parallel bool, begin func(), get func(key string) int64) {
	for _, k := range keys[:min(len(keys), 100)] {
		want := int64(idNum(lastPart(k)))
		if got := get(k); got != want {
			b.Fatalf("get(%q) = user %d, want %d", k, got, want)
		}
	}
	if begin != nil {
		begin()
	}
	n := len(keys)
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		var s int64
		j := 0
		for i := 0; i < b.N; i++ {
			s += get(keys[j])
			if j++; j == n {
				j = 0
			}
		}
		sink.Add(s)
		return
	}
	procs := runtime.GOMAXPROCS(0)
	stride := procs % n
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		var s int64
		j := int(next.Add(1)-1) % n
		for pb.Next() {
			s += get(keys[j])
			if j += stride; j >= n {
				j -= n
			}
		}
		sink.Add(s)
	})
}

// lastPart returns the id part of "gc:u12" or "u12".
func lastPart(k string) string {
	for i := len(k) - 1; i >= 0; i-- {
		if k[i] == ':' {
			return k[i+1:]
		}
	}
	return k
}
