package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/cache/v9"

	"github.com/tiercache/tiercache/tiered"
)

// Scenario 5: a Get of an id that is in no tier, answered by a loader of
// fixed cost (loadCost of busy work, like a fast indexed query). tiercache
// with leases pays GET + lease script + fill script around the load;
// without leases, GET + SET; go-redis/cache's Once, GET + SET.

const loadCost = 20 * time.Microsecond

// load is the loader every row calls: busy for loadCost, then the user.
func load(id string) User {
	for start := time.Now(); time.Since(start) < loadCost; {
	}
	return newUser(len(id))
}

type loadFixture struct {
	c        *tiered.Client
	leased   *tiered.Keyspace[User]
	unleased *tiered.Keyspace[User]
	gc       *cache.Cache
}

var loadFx lazy[*loadFixture]

func loadFixtureGet(b *testing.B) *loadFixture {
	return loadFx.get(b, func() (*loadFixture, error) {
		f := &loadFixture{}
		var err error
		if f.c, err = newTiered(); err != nil {
			return nil, err
		}
		loader := func(_ context.Context, id string) (User, error) { return load(id), nil }
		if f.leased, err = tiered.NewKeyspace(f.c, tiered.Config[User]{Name: "loadleased", TTL: hourTTL, Loader: loader}); err != nil {
			return nil, err
		}
		if f.unleased, err = tiered.NewKeyspace(f.c, tiered.Config[User]{Name: "loadplain", TTL: hourTTL, Loader: loader, DisableLeases: true}); err != nil {
			return nil, err
		}
		f.gc = cache.New(&cache.Options{Redis: newRedis(), LocalCache: cache.NewTinyLFU(10_000, hourTTL)})
		return f, nil
	})
}

// loadGen makes every benchmark call's ids new to Redis.
var loadGen atomic.Int64

// freshIDs returns n ids no earlier call used.
func freshIDs(n int) []string {
	p := "g" + strconv.FormatInt(loadGen.Add(1), 10) + "-"
	out := make([]string, n)
	for i := range out {
		out[i] = p + strconv.Itoa(i)
	}
	return out
}

// BenchmarkMissLoad reads ids that no tier holds, so each read runs the
// loader once and caches the result in both tiers.
func BenchmarkMissLoad(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		par := mode == "parallel"
		b.Run(mode+"/tiercache-leases", func(b *testing.B) {
			f := loadFixtureGet(b)
			runMisses(b, par, func(id string) {
				if _, err := f.leased.Get(ctx, id); err != nil {
					panic(err)
				}
			})
		})
		b.Run(mode+"/tiercache-no-leases", func(b *testing.B) {
			f := loadFixtureGet(b)
			runMisses(b, par, func(id string) {
				if _, err := f.unleased.Get(ctx, id); err != nil {
					panic(err)
				}
			})
		})
		b.Run(mode+"/go-redis-cache-Once", func(b *testing.B) {
			f := loadFixtureGet(b)
			runMisses(b, par, func(id string) {
				var u User
				err := f.gc.Once(&cache.Item{Ctx: ctx, Key: "gcl:" + id, Value: &u, TTL: hourTTL,
					Do: func(*cache.Item) (any, error) { return load(id), nil }})
				if err != nil {
					panic(err)
				}
			})
		})
	}
}

// runMisses times get over b.N fresh ids.
func runMisses(b *testing.B, parallel bool, get func(id string)) {
	ids := freshIDs(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for _, id := range ids {
			get(id)
		}
		return
	}
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			get(ids[next.Add(1)-1])
		}
	})
}
