package bench

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// User is the typed value every scenario caches.
type User struct {
	ID    int64    `json:"id" msgpack:"id"`
	Name  string   `json:"name" msgpack:"name"`
	Email string   `json:"email" msgpack:"email"`
	Tags  []string `json:"tags" msgpack:"tags"`
	Score float64  `json:"score" msgpack:"score"`
}

// smallTags keeps a user's JSON near 100 bytes.
var smallTags = []string{"go", "redis"}

// newUser returns user i with a JSON encoding of about 100 bytes.
func newUser(i int) User {
	return User{
		ID:    int64(i),
		Name:  "User " + strconv.Itoa(i),
		Email: "user" + strconv.Itoa(i) + "@example.com",
		Tags:  smallTags,
		Score: float64(i) / 7,
	}
}

// newLargeUser returns user i with a JSON encoding of about 10 KB: 500 tags.
func newLargeUser(i int) User {
	u := newUser(i)
	u.Tags = make([]string, 500)
	for j := range u.Tags {
		u.Tags[j] = "tag-" + strings.Repeat("x", 8) + strconv.Itoa(j%1000)
	}
	return u
}

// loadUsers is a BatchLoader of users whose ids end in their number.
func loadUsers(_ context.Context, ids []string) (map[string]User, error) {
	m := make(map[string]User, len(ids))
	for _, id := range ids {
		m[id] = newUser(idNum(id))
	}
	return m, nil
}

// ids returns n ids "u0".."u<n-1>".
func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// shuffled returns s in a fixed random order (seed 1), so the timed loops
// index a slice instead of formatting keys.
func shuffled(s []string) []string {
	out := make([]string, len(s))
	for i, j := range rand.New(rand.NewSource(1)).Perm(len(s)) {
		out[i] = s[j]
	}
	return out
}

// sink keeps the compiler from discarding reads.
var sink atomic.Int64

// lazy builds a fixture once per process: Redis-backed fixtures take seconds
// to warm, and `go test -bench` calls each benchmark function several times
// (once per b.N it tries, and once per -count).
type lazy[T any] struct {
	once sync.Once
	val  T
	err  error
}

func (l *lazy[T]) get(b *testing.B, build func() (T, error)) T {
	b.Helper()
	l.once.Do(func() { l.val, l.err = build() })
	if l.err != nil {
		b.Fatal(l.err)
	}
	return l.val
}

var (
	closersMu sync.Mutex
	closers   []func()
)

// onClose registers f to run after all benchmarks, before Redis stops.
func onClose(f func()) {
	closersMu.Lock()
	closers = append(closers, f)
	closersMu.Unlock()
}

func closeFixtures() {
	closersMu.Lock()
	defer closersMu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	closers = nil
}

// newTiered returns a tiered Client on its own go-redis client, once its
// invalidation bus is subscribed (before that, Get never serves locally).
func newTiered() (*tiered.Client, error) { return newObservedTiered(nil) }

// newObservedTiered is newTiered with an Observer (nil: none).
func newObservedTiered(obs tiered.Observer) (*tiered.Client, error) {
	c, err := tiered.NewClient(tiered.Options{Redis: newRedis(), Observer: obs})
	if err != nil {
		return nil, err
	}
	onClose(func() { c.Close() })
	return c, waitReady(c)
}

func waitReady(c *tiered.Client) error {
	deadline := time.Now().Add(10 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("tiered client not Ready after 10s")
		}
		time.Sleep(time.Millisecond) // polling an external condition
	}
	return nil
}

// ctx is the context of every call.
var ctx = context.Background()

// hourTTL keeps every entry fresh for the whole run (tiercache's default
// LocalTTL is a minute, which a -count 10 run outlives).
const hourTTL = time.Hour
