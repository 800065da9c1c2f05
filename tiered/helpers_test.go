package tiered

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// TestMain starts the redis-server the Example functions (package
// tiered_test) use, at REDIS_ADDR as they read it, and closes the Redis
// Cluster the tests share (sharedCluster) once they have run.
func TestMain(m *testing.M) {
	srv, err := redistest.StartE(redistest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("REDIS_ADDR", srv.Addr)
	code := m.Run()
	_ = srv.Close()
	if err := closeShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
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

// version returns the version of id's row (0 when absent).
func (d *testDB) version(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rows[id].Ver
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
	return serverBackend(srv).client(t, nil, opts...)
}

// readyClient is newClient once its bus is subscribed.
func readyClient(t testing.TB, srv *redistest.Server, opts ...func(*Options)) *Client {
	t.Helper()
	c := newClient(t, srv, opts...)
	waitReady(t, c)
	return c
}

// newClientHooks is newClient with test hooks installed before any
// keyspace is created.
func newClientHooks(t testing.TB, srv *redistest.Server, h *testHooks, opts ...func(*Options)) *Client {
	t.Helper()
	return newClient(t, srv, append(opts, withHooks(h))...)
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

// peers are the stage of most tests: two Clients over one deployment, as
// two processes would be (each with its own go-redis client), both
// subscribed, each with a keyspace of the same Config.
type peers struct {
	a, b   *Client
	ka, kb *Keyspace[user]
}

// newPeers returns two peers over b with keyspaces of cfg.
func newPeers(t testing.TB, b backend, cfg Config[user]) peers {
	t.Helper()
	return peersOf(t, b.client(t, nil), b.client(t, nil), cfg)
}

// peersOf makes peers of a and b, for tests whose Clients differ (hooks,
// options, a tripLog): it waits until both are subscribed and gives each a
// keyspace of cfg.
func peersOf(t testing.TB, a, b *Client, cfg Config[user]) peers {
	t.Helper()
	waitReady(t, a, b)
	return peers{a: a, b: b, ka: newKS(t, a, cfg), kb: newKS(t, b, cfg)}
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

// envelopeAt reads and decodes the envelope stored at key in Redis; the
// error wraps redis.Nil when the key is absent.
func envelopeAt(ctx context.Context, raw redis.UniversalClient, key string) (remote.Envelope, error) {
	b, err := raw.Get(ctx, key).Bytes()
	if err != nil {
		return remote.Envelope{}, fmt.Errorf("GET %s: %w", key, err)
	}
	env, err := remote.DecodeEnvelope(b)
	if err != nil {
		return remote.Envelope{}, fmt.Errorf("envelope at %s: %w", key, err)
	}
	return env, nil
}

// userAt decodes the user in the envelope stored at key.
func userAt(ctx context.Context, raw redis.UniversalClient, key string) (user, error) {
	env, err := envelopeAt(ctx, raw, key)
	if err != nil {
		return user{}, err
	}
	var u user
	if err := json.Unmarshal(env.Payload, &u); err != nil {
		return user{}, fmt.Errorf("payload at %s: %w", key, err)
	}
	return u, nil
}

// tripLog is a go-redis hook that records what a go-redis client sends,
// one trip per round trip: a command alone or a pipeline, with the address
// of the node it went to. Connection set-up, a cluster client's topology
// reads and the SCRIPT LOADs a Client sends in the background after each
// subscription are not ours and are left out (notOurs).
type tripLog struct {
	mu    sync.Mutex
	trips trips
}

// trip is one round trip.
type trip struct {
	addr     string   // the node's address
	pipeline bool     // a pipeline, not a command alone
	cmds     []string // command names, lower case
}

// trips are round trips, in the order they were sent.
type trips []trip

// notOurs are the commands go-redis sends on a new connection, those a
// cluster client reads the topology with, and the SCRIPT LOADs a Client
// sends in the background after each subscription.
var notOurs = map[string]bool{"hello": true, "client": true, "auth": true, "select": true, "ping": true,
	"script": true, "cluster": true, "command": true}

// watch installs l on rdb; call it before rdb sends anything (go-redis
// hooks are not safe to add concurrently with commands). A ClusterClient
// splits a pipeline into one per node, which its node clients' hooks see
// (the hook of the ClusterClient itself sees one pipeline): l watches the
// nodes.
func (l *tripLog) watch(rdb redis.UniversalClient) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(node *redis.Client) { node.AddHook(tripHook{l, node.Options().Addr}) })
	case *redis.Client:
		c.AddHook(tripHook{l, c.Options().Addr})
	}
}

func (l *tripLog) add(addr string, pipeline bool, cmds []redis.Cmder) {
	var names []string
	for _, c := range cmds {
		if !notOurs[c.Name()] {
			names = append(names, c.Name())
		}
	}
	if len(names) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips = append(l.trips, trip{addr: addr, pipeline: pipeline, cmds: names})
}

func (l *tripLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips = nil
}

func (l *tripLog) snapshot() trips {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.trips)
}

// tripHook is a tripLog's hook on the go-redis client of one node.
type tripHook struct {
	log  *tripLog
	addr string
}

func (h tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.log.add(h.addr, false, []redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.log.add(h.addr, true, cmds)
		return next(ctx, cmds)
	}
}

// cmds returns the commands of every trip.
func (ts trips) cmds() []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.cmds...)
	}
	return out
}

// names returns the commands of each trip.
func (ts trips) names() [][]string {
	out := make([][]string, len(ts))
	for i, t := range ts {
		out[i] = t.cmds
	}
	return out
}

// pipelines counts the pipelines per node address.
func (ts trips) pipelines() map[string]int {
	out := map[string]int{}
	for _, t := range ts {
		if t.pipeline {
			out[t.addr]++
		}
	}
	return out
}

// pipelined counts the commands sent in pipelines.
func (ts trips) pipelined() int {
	n := 0
	for _, t := range ts {
		if t.pipeline {
			n += len(t.cmds)
		}
	}
	return n
}

// alone returns the commands sent on their own.
func (ts trips) alone() []string {
	var out []string
	for _, t := range ts {
		if !t.pipeline {
			out = append(out, t.cmds...)
		}
	}
	return out
}

// scriptCalls counts the scripts run (EVALSHA or EVAL): for a single Get,
// its lease polls.
func (ts trips) scriptCalls() int {
	n := 0
	for _, c := range ts.cmds() {
		if c == "evalsha" || c == "eval" {
			n++
		}
	}
	return n
}

var errBoom = errors.New("boom")

// keyOf is the Redis key k keeps id's value under now.
func keyOf[V any](t testing.TB, k *Keyspace[V], id string) string {
	t.Helper()
	key, _, err := k.keyOf(ctxT(t), id)
	if err != nil {
		t.Fatalf("key of %q in %s: %v", id, k.Name(), err)
	}
	return key
}

// valueKey is the Redis key of id in keyspace ns (without groups), read
// with raw: the keyspace's epoch must exist (any read of the keyspace
// creates it).
func valueKey(t testing.TB, raw redis.UniversalClient, ns, id string) string {
	t.Helper()
	v, err := raw.Get(ctxT(t), keys.EpochKey(ns)).Uint64()
	if err != nil {
		t.Fatalf("epoch of %s: %v", ns, err)
	}
	return keys.ValueKey(ns, v, 0, id)
}

func (d *testDB) del(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.rows, id)
}
