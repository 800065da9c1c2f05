package tiered

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestMain starts the redis-server the Example functions (package
// tiered_test) use, at REDIS_ADDR as they read it.
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

type user struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Ver  int    `json:"ver"`
}

// testDB is the source of truth the loaders read: values with versions.
type testDB struct {
	mu    sync.Mutex
	rows  map[string]user
	loads atomic.Int64
	// block, when set, is called by the loader after it read the row and
	// before it returns it (a slow or paused loader).
	block func(id string)
}

func newDB() *testDB { return &testDB{rows: make(map[string]user)} }

func (d *testDB) put(id, name string) user {
	d.mu.Lock()
	defer d.mu.Unlock()
	u := d.rows[id]
	u = user{ID: id, Name: name, Ver: u.Ver + 1}
	d.rows[id] = u
	return u
}

func (d *testDB) load(ctx context.Context, id string) (user, error) {
	d.loads.Add(1)
	d.mu.Lock()
	u, ok := d.rows[id]
	d.mu.Unlock()
	if d.block != nil {
		d.block(id)
	}
	if err := ctx.Err(); err != nil {
		return user{}, err
	}
	if !ok {
		return user{}, ErrNotFound
	}
	return u, nil
}

// newClient returns a Client with its own go-redis client (its own
// connections, like a separate process), closed when the test ends.
func newClient(t testing.TB, srv *redistest.Server, opts ...func(*Options)) *Client {
	t.Helper()
	rdb := redis.NewClient(srv.RedisOptions())
	t.Cleanup(func() { _ = rdb.Close() })
	o := Options{Redis: rdb}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newClientHooks is newClient with test hooks installed before any
// keyspace is created.
func newClientHooks(t testing.TB, srv *redistest.Server, h *testHooks, opts ...func(*Options)) *Client {
	return newClient(t, srv, append(opts, func(o *Options) { o.hooks = h })...)
}

func newKS(t testing.TB, c *Client, cfg Config[user]) *Keyspace[user] {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "user"
	}
	k, err := NewKeyspace(c, cfg)
	if err != nil {
		t.Fatalf("NewKeyspace: %v", err)
	}
	return k
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func waitReady(t testing.TB, cs ...*Client) {
	t.Helper()
	for _, c := range cs {
		eventually(t, 10*time.Second, "bus subscribed", c.Ready)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustGet(t testing.TB, k *Keyspace[user], id string) user {
	t.Helper()
	u, err := k.Get(ctxT(t), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return u
}

// cmdCounter is a go-redis hook that counts commands and round trips.
type cmdCounter struct {
	mu    sync.Mutex
	trips int
	cmds  []string
}

func (h *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

// setupCmds are what a new connection sends before any command of ours,
// and the SCRIPT LOADs a Client sends in the background after each
// subscription.
var setupCmds = map[string]bool{"hello": true, "client": true, "auth": true, "select": true, "ping": true, "script": true}

func (h *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if setupCmds[cmd.Name()] {
			return next(ctx, cmd)
		}
		h.mu.Lock()
		h.trips++
		h.cmds = append(h.cmds, cmd.Name())
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (h *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.mu.Lock()
		h.trips++
		for _, c := range cmds {
			h.cmds = append(h.cmds, c.Name())
		}
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}
func (h *cmdCounter) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips, h.cmds = 0, nil
}
func (h *cmdCounter) snapshot() (int, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.trips, append([]string(nil), h.cmds...)
}

var errBoom = errors.New("boom")
