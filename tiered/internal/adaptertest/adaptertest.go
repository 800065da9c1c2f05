// Package adaptertest holds the test fixtures the metrics adapters
// (tieredprom, tieredotel) share: a TestMain that starts the redis-server
// their Examples use, Clients and keyspaces on servers of their own, and the
// reading of a Stats field as a metric's value.
package adaptertest

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// Main runs a package's tests, for its TestMain: it starts the
// redis-server the Examples use, at REDIS_ADDR as they read it, and fails
// the run if goroutines leak. It does not return.
func Main(m *testing.M) {
	srv, err := redistest.StartE(redistest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("REDIS_ADDR", srv.Addr)
	code := m.Run()
	_ = srv.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// NewClient returns a Ready Client, with obs (nil: none), of a redis-server
// of its own; both are closed in t.Cleanup.
func NewClient(t *testing.T, obs tiered.Observer) *tiered.Client {
	t.Helper()
	srv := redistest.Start(t)
	opts := srv.RedisOptions()
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := tiered.NewClient(tiered.Options{Redis: rdb, Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	poll(t, "the Client's bus subscribed", c.Ready)
	return c
}

// Settle waits until c's bus has read back every invalidation c sent, so
// that its counters hold still for a comparison.
func Settle(t *testing.T, c *tiered.Client) {
	t.Helper()
	poll(t, "the bus read back its own invalidations", func() bool {
		s := c.Stats()
		return s.InvalidationsReceived >= s.InvalidationsSent
	})
}

// poll waits until cond holds, for at most 10s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(time.Millisecond) // polling the Client's own state
	}
}

// User is the value the keyspaces of the tests hold.
type User struct{ ID, Name string }

// NewKeyspace returns a keyspace of users whose Loader knows ids "1" to
// "9", reports the others not found and takes at least loadTime.
func NewKeyspace(t *testing.T, c *tiered.Client, name string, loadTime time.Duration) *tiered.Keyspace[User] {
	t.Helper()
	k, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name: name, LocalTTL: time.Hour, NegativeTTL: time.Hour,
		Loader: func(ctx context.Context, id string) (User, error) {
			time.Sleep(loadTime) // a load of measurable length
			if len(id) != 1 || id < "1" || id > "9" {
				return User{}, tiered.ErrNotFound
			}
			return User{ID: id, Name: "user " + id}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Ctx returns a context that ends with the test, or after 30s.
func Ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// FieldValue reads a field of a Stats or ClientStats as its metric's value
// must be: a count, or seconds for a time.Duration. It is written apart
// from metricspec so that the tests check the adapters against the structs
// themselves.
func FieldValue(s any, field string) float64 {
	v := reflect.ValueOf(s).FieldByName(field)
	if d, ok := v.Interface().(time.Duration); ok {
		return d.Seconds()
	}
	switch {
	case v.CanUint():
		return float64(v.Uint())
	case v.CanInt():
		return float64(v.Int())
	}
	return v.Float()
}
