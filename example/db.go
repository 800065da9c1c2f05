package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// User is a row of the users table, cached in keyspace "user".
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// Product is a row of the products table, cached in keyspace "product". Its
// id starts with its category ("books-12"), so the cache can map an id to its
// version group without asking the database.
type Product struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Category   string `json:"category"`
	PriceCents int64  `json:"price_cents"`
}

// SearchResult is the answer to a free-text query, cached in keyspace
// "search" under the hash of the normalised query.
type SearchResult struct {
	Query      string   `json:"query"`
	ProductIDs []string `json:"product_ids"`
}

var (
	categories = []string{"books", "games", "music", "toys"}
	adjectives = []string{"red", "blue", "green", "tiny", "giant", "silent", "golden", "wooden"}
	nouns      = []string{"lamp", "robot", "guitar", "atlas", "puzzle", "drum", "novel", "train"}
	firstNames = []string{"Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken"}
)

// productID is the id of the i-th product (from 0): "books-1", "games-1",
// ..., "toys-1", "books-2", ...
func productID(i int) string {
	return fmt.Sprintf("%s-%d", categories[i%len(categories)], i/len(categories)+1)
}

// productCategory is the keyspace's Group func: "books-12" -> "books".
func productCategory(id string) string {
	cat, _, _ := strings.Cut(id, "-")
	return cat
}

// DB is the simulated source of truth: in-memory tables behind a fixed
// round-trip latency, with a query counter so the example can show how many
// queries the cache saved. Safe for concurrent use.
type DB struct {
	latency       time.Duration
	queries       atomic.Int64
	verifyQueries atomic.Int64 // the verifier's (tiered.Verifying)

	mu       sync.RWMutex
	users    map[string]User
	products map[string]Product
}

// newDB fills nUsers users with ids "1".."nUsers" and nProducts products
// spread over the categories.
func newDB(latency time.Duration, nUsers, nProducts int) *DB {
	db := &DB{latency: latency, users: make(map[string]User, nUsers), products: make(map[string]Product, nProducts)}
	for i := 1; i <= nUsers; i++ {
		id := strconv.Itoa(i)
		name := fmt.Sprintf("%s #%d", firstNames[i%len(firstNames)], i)
		db.users[id] = User{ID: id, Name: name, Email: "user" + id + "@example.com"}
	}
	for i := 0; i < nProducts; i++ {
		id, cat := productID(i), categories[i%len(categories)]
		name := fmt.Sprintf("%s %s %d", adjectives[i%len(adjectives)], nouns[(i/len(adjectives))%len(nouns)], i)
		db.products[id] = Product{ID: id, Name: name, Category: cat, PriceCents: int64(500 + 37*i%5000)}
	}
	return db
}

// query stands for one round trip to the database. The verifier's are
// counted apart: they are not reads the cache failed to save.
func (db *DB) query(ctx context.Context) error {
	if tiered.Verifying(ctx) {
		db.verifyQueries.Add(1)
	} else {
		db.queries.Add(1)
	}
	t := time.NewTimer(db.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Queries returns the number of queries served so far.
func (db *DB) Queries() int64 { return db.queries.Load() }

// User is the "user" keyspace's Loader. Absence wraps tiered.ErrNotFound, so
// the cache can remember it (NegativeTTL).
func (db *DB) User(ctx context.Context, id string) (User, error) {
	if err := db.query(ctx); err != nil {
		return User{}, err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	u, ok := db.users[id]
	if !ok {
		return User{}, fmt.Errorf("db: user %q: %w", id, tiered.ErrNotFound)
	}
	return u, nil
}

// Product is the "product" keyspace's Loader.
func (db *DB) Product(ctx context.Context, id string) (Product, error) {
	if err := db.query(ctx); err != nil {
		return Product{}, err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	p, ok := db.products[id]
	if !ok {
		return Product{}, fmt.Errorf("db: product %q: %w", id, tiered.ErrNotFound)
	}
	return p, nil
}

// Search answers several normalised queries in one round trip: the ids of up
// to 5 products whose name contains every word of the query.
func (db *DB) Search(ctx context.Context, queries []string) (map[string][]string, error) {
	if err := db.query(ctx); err != nil {
		return nil, err
	}
	db.mu.RLock()
	defer db.mu.RUnlock()
	out := make(map[string][]string, len(queries))
	for _, q := range queries {
		words := strings.Fields(q)
		ids := []string{}
		for id, p := range db.products {
			if containsAll(strings.ToLower(p.Name), words) {
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		out[q] = ids[:min(len(ids), 5)]
	}
	return out, nil
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

// PutUser writes u (the service then calls Set on the cache: write-through).
func (db *DB) PutUser(u User) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.users[u.ID] = u
}

// UserNow reads a user without latency or counting: the example's own
// checks, not the service's traffic.
func (db *DB) UserNow(id string) (User, bool) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	u, ok := db.users[id]
	return u, ok
}

// DeleteUser removes a user.
func (db *DB) DeleteUser(id string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	delete(db.users, id)
}

// RaisePrices raises every price of a category by pct percent (the service
// then calls InvalidateGroup: one call, however many products).
func (db *DB) RaisePrices(category string, pct int64) {
	db.mu.Lock()
	defer db.mu.Unlock()
	for id, p := range db.products {
		if p.Category == category {
			p.PriceCents += p.PriceCents * pct / 100
			db.products[id] = p
		}
	}
}

// ProductNow reads a product without latency or counting.
func (db *DB) ProductNow(id string) Product {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.products[id]
}
