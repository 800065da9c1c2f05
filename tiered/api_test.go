package tiered

// What adopters reach for first: per-call TTL and loaders, Peek, WaitReady,
// versioned writes, soft timeouts, compression.

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

func TestPerCallAndPerValueTTL(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c := readyClient(t, srv)
	k := newKS(t, c, Config[user]{TTL: time.Hour, TTLJitter: -1, TTLFor: func(id string, u user) time.Duration {
		if u.Name == "short" {
			return 10 * time.Second
		}
		return 0 // the keyspace's TTL
	}, Loader: func(_ context.Context, id string) (user, error) { return user{ID: id, Name: id}, nil }})
	ctx := ctxT(t)
	pttl := func(id string) time.Duration {
		d, err := raw.PTTL(ctx, keyOf(t, k, id)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if err := k.Set(ctx, "a", user{Name: "short"}); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(ctx, "b", user{Name: "short"}, WithTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(ctx, "c", user{Name: "long"}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, k, "short") // loaded: TTLFor applies to loads too
	for id, want := range map[string]time.Duration{"a": 10 * time.Second, "b": time.Minute, "c": time.Hour, "short": 10 * time.Second} {
		if d := pttl(id); d > want || d < want-2*time.Second {
			t.Errorf("PTTL(%s) = %v, want %v", id, d, want)
		}
	}
}

func TestGetOrLoad(t *testing.T) {
	srv := redistest.Start(t)
	p := newPeers(t, serverBackend(srv), Config[user]{}) // no Config.Loader: Get is cache-aside
	ctx := ctxT(t)
	var loads atomic.Int64
	g := newGate(t)
	load := func(ctx context.Context) (user, error) {
		loads.Add(1)
		select {
		case g.entered <- "x":
		default:
		}
		<-g.release
		return user{ID: "x", Name: "loaded"}, nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for _, k := range []*Keyspace[user]{p.ka, p.kb} {
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				u, err := k.GetOrLoad(ctx, "x", load)
				if err == nil && u.Name != "loaded" {
					err = errors.New("got " + u.Name)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	g.waitEntered(t)
	g.open()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("the call's loader ran %d times for 40 concurrent GetOrLoads in 2 Clients, want 1", n)
	}
	if u, err := p.kb.Get(ctx, "x"); err != nil || u.Name != "loaded" { // cached in both tiers
		t.Fatalf("Get after GetOrLoad = %+v, %v", u, err)
	}
	if _, err := p.ka.Get(ctx, "y"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cache-aside Get of an absent id = %v", err)
	}
	if _, err := p.ka.GetOrLoad(ctx, "z", func(context.Context) (user, error) { return user{}, ErrNotFound }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetOrLoad whose loader finds nothing = %v", err)
	}
	// A background refresh started by a GetOrLoad loads with its loader.
	k := newKS(t, p.a, Config[user]{Name: "swr", TTL: 100 * time.Millisecond, StaleWhileRevalidate: time.Hour, EarlyRefreshBeta: NoEarlyRefresh, LocalTTL: 50 * time.Millisecond})
	var n atomic.Int64
	counted := func(context.Context) (user, error) { n.Add(1); return user{Name: "r"}, nil }
	if _, err := k.GetOrLoad(ctx, "r", counted); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond) // past TTL: time is what is tested
	if _, err := k.GetOrLoad(ctx, "r", counted); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the revalidation used the call's loader", func() bool { return n.Load() == 2 })
}

func TestPeekIsLocalOnly(t *testing.T) {
	srv := redistest.Start(t)
	log := &tripLog{}
	c := serverBackend(srv).client(t, log)
	waitReady(t, c)
	db := newDB()
	db.put("a", "A")
	k := newKS(t, c, Config[user]{Loader: db.load, LocalTTL: time.Hour, NegativeTTL: time.Minute})
	ctx := ctxT(t)
	log.reset()
	if _, ok := k.Peek("a"); ok {
		t.Fatal("Peek of an id never read returned a value")
	}
	if n := len(log.snapshot()); n != 0 || db.loads.Load() != 0 {
		t.Fatalf("Peek made %d Redis calls and %d loads", n, db.loads.Load())
	}
	mustGet(t, k, "a")
	_, _ = k.Get(ctx, "absent")
	if u, ok := k.Peek("a"); !ok || u.Name != "A" {
		t.Fatalf("Peek of a fresh value = %+v, %v", u, ok)
	}
	if _, ok := k.Peek("absent"); ok {
		t.Fatal(`Peek of a cached "not found" returned ok`)
	}
	if _, ok := k.Peek("bad\x00id"); ok {
		t.Fatal("Peek of an invalid id returned ok")
	}
	s := k.Stats()
	if s.LocalHits != 2 || s.LocalMisses != 3 || s.Loads != 2 {
		t.Fatalf("stats %+v: want Peek's hits and misses counted (2 hits, 3 misses) and nothing loaded by it", s)
	}
}

func TestWaitReady(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	if err := c.WaitReady(ctxT(t)); err != nil || !c.Ready() {
		t.Fatalf("WaitReady = %v, Ready %v", err, c.Ready())
	}
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	d := newClient(t, srv, withHooks(&testHooks{busDown: func() {
		select {
		case held <- struct{}{}:
			<-release
		default:
		}
	}}))
	t.Cleanup(func() { close(release) })
	waitReady(t, d)
	srv.KillClients(t, "TYPE", "pubsub")
	<-held
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady with the bus held down = %v, want the deadline", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctxT(t)); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitReady after Close = %v", err)
	}
}

// Two writers update the source as v1 then v2 but call Set in the order
// v2, v1: with VersionOf every Client serves v2, the writer of v1 and a
// Client started afterwards included.
func TestVersionOfKeepsTheNewestWrite(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		cfg := Config[user]{VersionOf: func(u user) uint64 { return uint64(u.Ver) }, LocalTTL: time.Hour}
		p := newPeers(t, b, cfg)
		ctx := ctxT(t)
		db := newDB()
		v1 := db.put("x", "v1")
		written := make(chan struct{})
		go func() { // writer A wrote the source first, and is slow to Set
			<-written
			if err := p.ka.Set(ctx, "x", v1); err != nil {
				t.Error(err)
			}
			close(written)
		}()
		v2 := db.put("x", "v2")
		if err := p.kb.Set(ctx, "x", v2); err != nil {
			t.Fatal(err)
		}
		written <- struct{}{} // now A's Set runs, after B's
		<-written
		late := newKS(t, b.client(t, nil), cfg)
		for name, k := range map[string]*Keyspace[user]{"A (wrote v1)": p.ka, "B (wrote v2)": p.kb, "a Client started afterwards": late} {
			if u := mustGet(t, k, "x"); u != v2 {
				t.Fatalf("%s serves %+v, want v2", name, u)
			}
		}
		if s := p.ka.Stats(); s.StaleWritesRefused != 1 {
			t.Fatalf("A's StaleWritesRefused = %d, want 1", s.StaleWritesRefused)
		}
		// A fill of an older version than Redis's (a lagging replica read
		// by the loader) is refused too.
		db2 := newDB()
		old := db2.put("y", "old")
		k := newKS(t, b.client(t, nil), Config[user]{Name: "fill", VersionOf: cfg.VersionOf, Loader: func(ctx context.Context, id string) (user, error) { return old, nil }})
		newer := user{ID: "y", Name: "newer", Ver: 5}
		if err := newKS(t, p.a, Config[user]{Name: "fill", VersionOf: cfg.VersionOf}).Set(ctx, "y", newer); err != nil {
			t.Fatal(err)
		}
		if err := b.raw(t).Set(ctx, keyOf(t, k, "y"), mustStale(t, b, k, "y"), 0).Err(); err != nil {
			t.Fatal(err)
		}
		mustGet(t, k, "y") // loads old, whose fill Redis refuses
		if s := k.Stats(); s.StaleWritesRefused != 1 {
			t.Fatalf("fill of an older version: %+v", s)
		}
	})
}

// mustStale returns the envelope at id's key made stale (fresh-until in the
// past), so that a Get takes the lease and loads over it.
func mustStale(t *testing.T, b backend, k *Keyspace[user], id string) []byte {
	t.Helper()
	env, err := envelopeAt(ctxT(t), b.raw(t), keyOf(t, k, id))
	if err != nil {
		t.Fatal(err)
	}
	env.FreshUntil = 1
	return remote.AppendEnvelope(nil, &env)
}

// SoftLoadTimeout is fail-safe: with a stale value in hand and a slow load,
// the caller gets the stale value after the soft timeout; the one load goes
// on and fills both tiers.
func TestSoftLoadTimeout(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	db := newDB()
	db.put("a", "v1")
	g := newGate(t)
	var slow atomic.Bool
	loader := func(ctx context.Context, id string) (user, error) {
		if slow.Load() {
			return g.loader(db)(ctx, id)
		}
		return db.load(ctx, id)
	}
	k := newKS(t, c, Config[user]{TTL: 100 * time.Millisecond, LocalTTL: 100 * time.Millisecond, StaleIfError: time.Hour,
		SoftLoadTimeout: 50 * time.Millisecond, EarlyRefreshBeta: NoEarlyRefresh, Loader: loader})
	mustGet(t, k, "a")
	time.Sleep(150 * time.Millisecond) // past TTL: time is what is tested
	db.put("a", "v2")
	slow.Store(true)
	start := time.Now()
	u, err := k.Get(ctxT(t), "a")
	if took := time.Since(start); err != nil || u.Name != "v1" || took > time.Second {
		t.Fatalf("Get with a slow load = %+v, %v after %v; want the stale v1 after about 50ms", u, err, took)
	}
	g.waitEntered(t)
	if s := k.Stats(); s.SoftTimeouts != 1 {
		t.Fatalf("SoftTimeouts = %d", s.SoftTimeouts)
	}
	g.open()
	eventually(t, 5*time.Second, "the load fills both tiers", func() bool {
		v, ok := k.Peek("a")
		return ok && v.Name == "v2"
	})
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("%d slow loads, want 1", n)
	}
}

func TestCompressAbove(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	a, b := readyClient(t, srv), readyClient(t, srv)
	cfg := Config[string]{Name: "doc", CompressAbove: 1024, LocalTTL: time.Hour}
	ka, err := NewKeyspace(a, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := NewKeyspace(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := struct{ ka, kb *Keyspace[string] }{ka, kb}
	ctx := ctxT(t)
	big := strings.Repeat(`{"sku":"A-1","name":"a lamp","price":100}`, 500) // about 20 KB, compressible
	if err := p.ka.Set(ctx, "big", big); err != nil {
		t.Fatal(err)
	}
	if err := p.ka.Set(ctx, "small", "tiny"); err != nil {
		t.Fatal(err)
	}
	n, err := raw.StrLen(ctx, keyOf(t, p.ka, "big")).Result()
	if err != nil || n > int64(len(big))/4 {
		t.Fatalf("a %d-byte compressible value takes %d bytes in Redis, want a fraction", len(big), n)
	}
	env, err := envelopeAt(ctx, raw, keyOf(t, p.ka, "small"))
	if err != nil || env.Flags&remote.FlagCompressed != 0 {
		t.Fatalf("a value under CompressAbove was compressed: %+v, %v", env, err)
	}
	if v, err := p.kb.Get(ctx, "big"); err != nil || v != big {
		t.Fatalf("the peer's Get of the compressed value: %d bytes, %v", len(v), err)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = p.kb.Get(ctx, "big") }); n != 0 {
		t.Fatalf("a local hit of a compressed value allocates %v times: it must not decompress", n)
	}
}

// A keyspace whose Redis reads mostly miss reads with the lease script:
// a miss is two round trips (read-or-lease, fill), not three; once reads
// mostly hit again, they go back to a plain GET.
func TestMissHeavyKeyspaceReadsWithTheLease(t *testing.T) {
	srv := redistest.Start(t)
	log := &tripLog{}
	c := serverBackend(srv).client(t, log)
	waitReady(t, c)
	k := newKS(t, c, Config[user]{LocalCapacity: 1, LocalShards: 1, Loader: func(_ context.Context, id string) (user, error) {
		return user{ID: id}, nil
	}})
	for i := 0; i < 2*readWindowSize; i++ { // misses
		mustGet(t, k, "warm"+strconv.Itoa(i))
	}
	log.reset()
	mustGet(t, k, "cold")
	if names := log.snapshot().names(); len(names) != 2 || names[0][0] != "evalsha" || names[1][0] != "evalsha" {
		t.Fatalf("a miss in a miss-heavy keyspace made %v; want two round trips: read-or-lease, fill", names)
	}
	for i := 0; i < 2*readWindowSize; i++ { // hits (the local tier holds one entry)
		mustGet(t, k, "warm"+strconv.Itoa(i%2))
	}
	log.reset()
	mustGet(t, k, "warm5")
	if names := log.snapshot().names(); len(names) != 1 || names[0][0] != "get" {
		t.Fatalf("a Redis hit in a hit-heavy keyspace made %v; want one GET", names)
	}
}

// LocalMaxBytes bounds the local tier by its values' encoded size (plus the
// fixed overhead per entry), far past the bound; the hit path stays free.
func TestLocalMaxBytes(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	const bound = 64 << 10
	k := newKS(t, c, Config[user]{LocalMaxBytes: bound, LocalCapacity: 100_000, LocalTTL: time.Hour, Loader: func(_ context.Context, id string) (user, error) {
		return user{ID: id, Name: strings.Repeat("n", 1000)}, nil
	}})
	ctx := ctxT(t)
	for i := 0; i < 1000; i++ { // about 1 MB of values
		mustGet(t, k, strconv.Itoa(i))
	}
	if err := k.Set(ctx, "set", user{Name: strings.Repeat("s", 1000)}); err != nil {
		t.Fatal(err)
	}
	size := int64(len(mustJSON(user{ID: "999", Name: strings.Repeat("n", 1000)})))
	held := int64(k.Stats().LocalEntries)
	if held == 0 || held*(size+k.local.Overhead()) > bound+size+k.local.Overhead() || k.local.Bytes() > bound {
		t.Fatalf("%d entries of %d bytes (+%d overhead) held, %d bytes counted: over the %d-byte bound", held, size, k.local.Overhead(), k.local.Bytes(), bound)
	}
	t.Logf("%d entries held of 1000 loaded (%d bytes of %d)", held, k.local.Bytes(), bound)
	if _, ok := k.Peek("set"); !ok {
		t.Fatal("the last Set is not held locally")
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = k.Get(ctx, "set") }); n != 0 {
		t.Fatalf("a local hit with LocalMaxBytes allocates %v times", n)
	}
}
