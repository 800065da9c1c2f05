package tiered_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/tiered"
)

// The examples read the Redis address from REDIS_ADDR (the tests start a
// redis-server and set it), falling back to localhost:6379. Each one is
// whole: copied into a program of its own, it compiles and runs.

// Read-through: Get goes local tier -> Redis -> Loader, and caches the
// Loader's answer in both tiers.
func Example() {
	type User struct{ ID, Name string }
	db := map[string]User{"42": {ID: "42", Name: "Ada"}}

	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	// ContextTimeoutEnabled lets go-redis itself bound each call by its
	// context: the fastest Redis path.
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	loads := 0
	users, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name:        "example-user",
		TTL:         time.Hour,
		LocalTTL:    time.Minute,
		NegativeTTL: 30 * time.Second,
		Loader: func(ctx context.Context, id string) (User, error) {
			loads++
			u, ok := db[id]
			if !ok {
				return User{}, tiered.ErrNotFound
			}
			return u, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		u, err := users.Get(ctx, "42")
		fmt.Println(u.Name, err)
	}
	_, err = users.Get(ctx, "nobody")
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
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	sessions, err := tiered.NewKeyspace(c, tiered.Config[string]{Name: "example-session", TTL: 15 * time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	if err := sessions.Set(ctx, "abc-def", "user:42"); err != nil {
		fmt.Println(err)
		return
	}
	s, err := sessions.Get(ctx, "abc-def")
	fmt.Println(s, err)

	if err := sessions.Delete(ctx, "abc-def"); err != nil {
		fmt.Println(err)
		return
	}
	_, err = sessions.Get(ctx, "abc-def")
	fmt.Println(err)
	// Output:
	// user:42 <nil>
	// tiercache: not found
}

// GetMany answers from the local tier, then one pipelined Redis round
// trip, then one BatchLoader call for what is left.
func ExampleKeyspace_GetMany() {
	type User struct{ ID, Name string }
	db := map[string]User{"42": {ID: "42", Name: "Ada"}, "7": {ID: "7", Name: "Grace"}}

	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	users, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name: "example-batch",
		BatchLoader: func(ctx context.Context, ids []string) (map[string]User, error) {
			out := map[string]User{}
			for _, id := range ids {
				if u, ok := db[id]; ok {
					out[id] = u
				}
			}
			return out, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := users.GetMany(context.Background(), []string{"42", "7", "missing"})
	fmt.Println(len(m), m["42"].Name, m["7"].Name, err)
	// Output:
	// 2 Ada Grace <nil>
}

// Version groups (the caching guide's generation keys): one call makes
// every key of a group unreachable, in Redis and in every process.
func ExampleKeyspace_InvalidateGroup() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	prices := map[string]int{"books/1": 500, "books/2": 900}
	products, err := tiered.NewKeyspace(c, tiered.Config[int]{
		Name:  "example-price",
		Group: func(id string) string { return strings.SplitN(id, "/", 2)[0] },
		Loader: func(ctx context.Context, id string) (int, error) {
			return prices[id], nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	p, err := products.Get(ctx, "books/1")
	fmt.Println(p, err)

	prices["books/1"], prices["books/2"] = 550, 990 // a price change for the whole category
	if err := products.InvalidateGroup(ctx, "books"); err != nil {
		fmt.Println(err)
		return
	}
	p, err = products.Get(ctx, "books/1")
	fmt.Println(p, err)
	// Output:
	// 500 <nil>
	// 550 <nil>
}

// Unbounded user input (a search query) is hashed before it becomes a key.
func ExampleKeyspace_Get_hashedKey() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	search, err := tiered.NewKeyspace(c, tiered.Config[[]string]{
		Name: "example-search",
		Loader: func(ctx context.Context, id string) ([]string, error) {
			return []string{"red lamp", "red chair"}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	query := "  Red   things for the living room, under $50 "
	id := keys.Hash(strings.ToLower(strings.Join(strings.Fields(query), " ")))
	hits, err := search.Get(context.Background(), id)
	fmt.Println(hits, err)
	// Output:
	// [red lamp red chair] <nil>
}

// GetOrLoad: this call's loader, with every guarantee of Get (one load per
// id across processes, early refresh, stale windows).
func ExampleKeyspace_GetOrLoad() {
	type Order struct{ ID, Status string }

	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	orders, err := tiered.NewKeyspace(c, tiered.Config[Order]{Name: "example-order", TTL: time.Minute})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := c.WaitReady(ctx); err != nil { // the local tier serves once the bus is up
		fmt.Println(err)
		return
	}
	tenant := "acme" // what the loader needs beyond the id comes with the call
	o, err := orders.GetOrLoad(ctx, "o-1", func(ctx context.Context) (Order, error) {
		return Order{ID: "o-1", Status: "shipped to " + tenant}, nil
	})
	fmt.Println(o.Status, err)
	cached, ok := orders.Peek("o-1") // the local tier alone
	fmt.Println(cached.Status, ok)
	// Output:
	// shipped to acme <nil>
	// shipped to acme true
}

// VersionOf: Redis keeps the highest version, so two writers that update the
// source in one order and the cache in the other leave the newer value.
func ExampleConfig_versionOf() {
	type Product struct {
		SKU     string
		Price   int
		Version uint64 // a row version, an updated_at in µs...
	}

	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	products, err := tiered.NewKeyspace(c, tiered.Config[Product]{
		Name:      "example-product",
		VersionOf: func(p Product) uint64 { return p.Version },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	_ = products.Set(ctx, "lamp", Product{SKU: "lamp", Price: 120, Version: 2}) // the newer write lands first
	_ = products.Set(ctx, "lamp", Product{SKU: "lamp", Price: 100, Version: 1}) // the older one changes nothing
	p, err := products.Get(ctx, "lamp")
	fmt.Println(p.Price, err, products.Stats().StaleWritesRefused)
	// Output:
	// 120 <nil> 1
}

// SoftLoadTimeout: when the source is slow and a stale value may be served
// (StaleIfError), callers get it after the soft timeout; the load goes on
// and refreshes the cache.
func ExampleConfig_softLoadTimeout() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	slow := make(chan struct{})
	loads := 0
	rates, err := tiered.NewKeyspace(c, tiered.Config[string]{
		Name:             "example-rate",
		TTL:              100 * time.Millisecond,
		LocalTTL:         100 * time.Millisecond,
		StaleIfError:     time.Hour,
		SoftLoadTimeout:  20 * time.Millisecond,
		EarlyRefreshBeta: tiered.NoEarlyRefresh,
		Loader: func(ctx context.Context, id string) (string, error) {
			loads++
			if loads > 1 {
				<-slow // the source is having a bad moment
				return "1.09", nil
			}
			return "1.08", nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	r, err := rates.Get(ctx, "EURUSD")
	fmt.Println(r, err)
	time.Sleep(150 * time.Millisecond) // the value goes stale
	r, err = rates.Get(ctx, "EURUSD")  // answered after 20ms, with the stale value
	fmt.Println(r, err)
	close(slow)
	// Output:
	// 1.08 <nil>
	// 1.08 <nil>
}
