package local_test

import (
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/tiercache/tiercache/local"
)

type user struct {
	ID   int64
	Name string
}

func Example() {
	// 100,000 users at most, and at most 64 MiB charged: each user counts
	// its encoded size (Entry.Size) plus c.Overhead() bytes.
	c := local.New[user](local.Options{Capacity: 100_000, MaxBytes: 64 << 20})
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) } // a monotonic reading

	key := "user:42"
	h := xxhash.Sum64String(key)

	// A fill from a slower tier: take the token before reading there, so
	// that an invalidation arriving meanwhile refuses the fill.
	tok := c.Token(h)
	u := user{ID: 42, Name: "Ada"} // read from Redis or the database
	stored := c.SetIfUnchanged(h, local.Entry[user]{Key: key, Value: u, Expire: now() + int64(time.Minute), Size: 27}, tok)
	fmt.Println("stored:", stored)

	if p := c.Ref(h, key, now()); p != nil { // no lock, no copy, no allocation
		fmt.Println("hit:", p.Name)
	}

	c.Delete(h, key) // an invalidation
	_, ok := c.Get(h, key, now())
	fmt.Println("after delete:", ok)
	fmt.Println("refused after delete:", !c.SetIfUnchanged(h, local.Entry[user]{Key: key, Value: u, Expire: now() + int64(time.Minute)}, tok))
	// Output:
	// stored: true
	// hit: Ada
	// after delete: false
	// refused after delete: true
}
