package tieredotel

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// TestMain starts the redis-server the Examples use, at REDIS_ADDR as they
// read it, and checks that nothing leaks.
func TestMain(m *testing.M) {
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

// newClient returns a Ready Client of a redis-server of its own, with obs.
func newClient(t *testing.T, obs tiered.Observer) *tiered.Client {
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
	deadline := time.Now().Add(10 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the Client's bus did not subscribe within 10s")
		}
		time.Sleep(time.Millisecond) // polling the Client's own state
	}
	return c
}

type user struct{ ID, Name string }

// newKeyspace returns a keyspace of users whose Loader knows ids "1" to
// "9" and takes at least loadTime.
func newKeyspace(t *testing.T, c *tiered.Client, name string, loadTime time.Duration) *tiered.Keyspace[user] {
	t.Helper()
	k, err := tiered.NewKeyspace(c, tiered.Config[user]{
		Name: name, LocalTTL: time.Hour, NegativeTTL: time.Hour,
		Loader: func(ctx context.Context, id string) (user, error) {
			time.Sleep(loadTime) // a load of measurable length
			if len(id) != 1 || id < "1" || id > "9" {
				return user{}, tiered.ErrNotFound
			}
			return user{ID: id, Name: "user " + id}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
