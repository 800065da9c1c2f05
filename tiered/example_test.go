package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/tiered"
)

type User struct {
	ID   string
	Name string
}

// users is the example's database.
var users = map[string]User{"42": {ID: "42", Name: "Ada"}, "7": {ID: "7", Name: "Grace"}}

// Read-through: Get goes local tier -> Redis -> Loader, and caches the
// Loader's answer in both tiers.
func Example() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: tiered.ExampleRedisAddr})
	defer rdb.Close()

	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	loads := 0
	people, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name:        "example-user",
		TTL:         time.Hour,
		LocalTTL:    time.Minute,
		NegativeTTL: 30 * time.Second,
		Loader: func(ctx context.Context, id string) (User, error) {
			loads++
			u, ok := users[id]
			if !ok {
				return User{}, tiered.ErrNotFound
			}
			return u, nil
		},
	})
	if err != nil {
		panic(err)
	}
	for i := 0; i < 3; i++ {
		u, err := people.Get(ctx, "42")
		fmt.Println(u.Name, err)
	}
	_, err = people.Get(ctx, "nobody")
	fmt.Println(errors.Is(err, tiered.ErrNotFound))
	fmt.Println("loads:", loads)
	// Output:
	// Ada <nil>
	// Ada <nil>
	// Ada <nil>
	// true
	// loads: 2
}

// Write-through and explicit invalidation: Set and Delete change Redis,
// this process's local tier, and (over Pub/Sub) every peer's.
func ExampleKeyspace_Set() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: tiered.ExampleRedisAddr})
	defer rdb.Close()
	c, _ := tiered.NewClient(tiered.Options{Redis: rdb})
	defer c.Close()
	sessions, _ := tiered.NewKeyspace(c, tiered.Config[string]{Name: "example-session", TTL: 15 * time.Minute})

	_ = sessions.Set(ctx, "abc-def", "user:42")
	s, err := sessions.Get(ctx, "abc-def")
	fmt.Println(s, err)

	_ = sessions.Delete(ctx, "abc-def")
	_, err = sessions.Get(ctx, "abc-def")
	fmt.Println(err)
	// Output:
	// user:42 <nil>
	// tiercache: not found
}

// GetMany answers from the local tier, then one pipelined Redis round
// trip, then one BatchLoader call for what is left.
func ExampleKeyspace_GetMany() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: tiered.ExampleRedisAddr})
	defer rdb.Close()
	c, _ := tiered.NewClient(tiered.Options{Redis: rdb})
	defer c.Close()
	people, _ := tiered.NewKeyspace(c, tiered.Config[User]{
		Name: "example-batch",
		BatchLoader: func(ctx context.Context, ids []string) (map[string]User, error) {
			out := map[string]User{}
			for _, id := range ids {
				if u, ok := users[id]; ok {
					out[id] = u
				}
			}
			return out, nil
		},
	})
	m, err := people.GetMany(ctx, []string{"42", "7", "missing"})
	fmt.Println(len(m), m["42"].Name, m["7"].Name, err)
	// Output:
	// 2 Ada Grace <nil>
}

// Version groups (the caching guide's generation keys): one call makes
// every key of a group unreachable, in Redis and in every process.
func ExampleKeyspace_InvalidateGroup() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: tiered.ExampleRedisAddr})
	defer rdb.Close()
	c, _ := tiered.NewClient(tiered.Options{Redis: rdb})
	defer c.Close()
	prices := map[string]int{"books/1": 500, "books/2": 900}
	products, _ := tiered.NewKeyspace(c, tiered.Config[int]{
		Name:  "example-price",
		Group: func(id string) string { return strings.SplitN(id, "/", 2)[0] },
		Loader: func(ctx context.Context, id string) (int, error) {
			return prices[id], nil
		},
	})
	p, _ := products.Get(ctx, "books/1")
	fmt.Println(p)

	prices["books/1"], prices["books/2"] = 550, 990 // a price change for the whole category
	_ = products.InvalidateGroup(ctx, "books")
	p, _ = products.Get(ctx, "books/1")
	fmt.Println(p)
	// Output:
	// 500
	// 550
}

// Unbounded user input (a search query) is hashed before it becomes a key.
func ExampleKeyspace_Get_hashedKey() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: tiered.ExampleRedisAddr})
	defer rdb.Close()
	c, _ := tiered.NewClient(tiered.Options{Redis: rdb})
	defer c.Close()
	search, _ := tiered.NewKeyspace(c, tiered.Config[[]string]{
		Name: "example-search",
		Loader: func(ctx context.Context, id string) ([]string, error) {
			return []string{"red lamp", "red chair"}, nil
		},
	})
	query := "  Red   things for the living room, under $50 "
	hits, _ := search.Get(ctx, keys.Hash(strings.ToLower(strings.Join(strings.Fields(query), " "))))
	fmt.Println(hits)
	// Output:
	// [red lamp red chair]
}
