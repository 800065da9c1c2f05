package tiered

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
)

// doc10KB is a 10 KB JSON value of the kind CompressAbove is for.
type doc10KB struct {
	Items []struct {
		SKU, Name, Description string
		Price                  int
	}
}

func newDoc10KB() doc10KB {
	var d doc10KB
	for i := 0; len(mustJSON(d)) < 10_000; i++ {
		d.Items = append(d.Items, struct {
			SKU, Name, Description string
			Price                  int
		}{"SKU-" + strconv.Itoa(i), "a lamp", strings.Repeat("warm light, brass finish. ", 3), 100 + i})
	}
	return d
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// BenchmarkRedisHit10KB is a Redis hit of a 10 KB JSON value stored plain
// and S2-compressed (CompressAbove), same run. go test -run '^$' -bench
// RedisHit10KB -benchmem -count 5 ./tiered
func BenchmarkRedisHit10KB(b *testing.B) {
	be := singleBackend(b)
	c := be.clientOf(b, be.newRedis(true), nil)
	waitReady(b, c)
	doc := newDoc10KB()
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		compress int
	}{{"plain", 0}, {"compressed", 1024}} {
		k, err := NewKeyspace(c, Config[doc10KB]{Name: "doc-" + tc.name, LocalCapacity: 1, LocalShards: 1, CompressAbove: tc.compress})
		if err != nil {
			b.Fatal(err)
		}
		for _, id := range []string{"1", "2"} {
			if err := k.Set(ctx, id, doc); err != nil {
				b.Fatal(err)
			}
		}
		n, _ := be.raw(b).StrLen(ctx, keyOf(b, k, "1")).Result()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ReportMetric(float64(n), "redis-B")
			ids := []string{"1", "2"}
			for i := 0; i < b.N; i++ {
				if _, err := k.Get(ctx, ids[i&1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMissLoad is a miss that loads (and fills both tiers): Get with
// Config.Loader beside GetOrLoad with the same loader, same run. go test
// -run '^$' -bench MissLoad -benchmem -count 5 ./tiered
func BenchmarkMissLoad(b *testing.B) {
	be := singleBackend(b)
	c := be.clientOf(b, be.newRedis(true), nil)
	waitReady(b, c)
	ctx := context.Background()
	u := benchUser{ID: 42, Name: "ada", Email: "a@b.c", Tags: []string{"x"}}
	load := func(context.Context, string) (benchUser, error) { return u, nil }
	get, err := NewKeyspace(c, Config[benchUser]{Name: "miss-get", Loader: load, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	gol, err := NewKeyspace(c, Config[benchUser]{Name: "miss-getorload", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	next := 0 // ids never read before, across runs of the sub-benchmarks
	id := func() string { next++; return "m" + strconv.Itoa(next) }
	b.Run("Get+Loader", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := get.Get(ctx, id()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetOrLoad", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := gol.GetOrLoad(ctx, id(), func(ctx context.Context) (benchUser, error) { return u, nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}
