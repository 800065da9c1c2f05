package tiered

import (
	"context"
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
