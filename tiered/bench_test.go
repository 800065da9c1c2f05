package tiered

import (
	"context"

	"github.com/redis/go-redis/v9"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

type benchUser struct {
	ID    int64
	Name  string
	Email string
	Tags  []string
	Score float64
}

// BenchmarkLocalHit is the hit path alone (the bench/ module compares it
// with peers): one hot key.
func BenchmarkLocalHit(b *testing.B) {
	srv := redistest.Start(b)
	c := newClient(b, srv)
	waitReady(b, c)
	k, err := NewKeyspace(c, Config[benchUser]{Name: "bu", LocalTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := k.Set(ctx, "42", benchUser{ID: 42, Name: "ada", Email: "a@b.c", Tags: []string{"x"}}); err != nil {
		b.Fatal(err)
	}
	if _, err := k.Get(ctx, "42"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := k.Get(ctx, "42"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRedisHit is a Get that misses locally and hits Redis, beside a
// raw go-redis GET of the same bytes.
func BenchmarkRedisHit(b *testing.B) {
	srv := redistest.Start(b)
	ro := srv.RedisOptions()
	ro.ContextTimeoutEnabled = true // timeouts enforced by go-redis, no goroutine per call
	rdb := redis.NewClient(ro)
	defer rdb.Close()
	c, err := NewClient(Options{Redis: rdb})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	waitReady(b, c)
	k, err := NewKeyspace(c, Config[benchUser]{Name: "bu", LocalCapacity: 1, LocalShards: 1})
	_ = err
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"1", "2"} {
		if err := k.Set(ctx, id, benchUser{ID: 42, Name: "ada", Email: "a@b.c", Tags: []string{"x"}}); err != nil {
			b.Fatal(err)
		}
	}
	ids := []string{"1", "2"}
	b.Run("tiercache", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := k.Get(ctx, ids[i&1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-redis-GET", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := rdb.Get(ctx, "bu:"+ids[i&1]).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
