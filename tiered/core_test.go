package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// A miss loads once across two Clients and fills both tiers.
func TestReadThroughFillsBothTiers(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		db := newDB()
		db.put("42", "ada")
		p := newPeers(t, b, Config[user]{Loader: db.load})

		if got := mustGet(t, p.ka, "42"); got.Name != "ada" {
			t.Fatalf("first Get = %+v", got)
		}
		if got := mustGet(t, p.ka, "42"); got.Name != "ada" {
			t.Fatalf("second Get = %+v", got)
		}
		if got := mustGet(t, p.kb, "42"); got.Name != "ada" {
			t.Fatalf("peer Get = %+v", got)
		}
		if n := db.loads.Load(); n != 1 {
			t.Fatalf("loader ran %d times, want 1", n)
		}
		sa, sb := p.ka.Stats(), p.kb.Stats()
		if sa.LocalHits != 1 || sa.Loads != 1 || sa.RedisMisses != 1 || sa.LeasesWon != 1 {
			t.Fatalf("stats of the loading client: %+v", sa)
		}
		if sb.RedisHits != 1 || sb.Loads != 0 {
			t.Fatalf("stats of the peer: %+v", sb)
		}
		// The value sits in Redis under its key in a valid envelope.
		env, err := envelopeAt(ctxT(t), b.raw(t), keyOf(t, p.ka, "42"))
		if err != nil || !strings.Contains(string(env.Payload), `"ada"`) {
			t.Fatalf("payload %q: %v", env.Payload, err)
		}
	})
}

// Cache-aside writes and reads without a Loader, in the writing Client and
// in a peer.
func TestCacheAsideWithoutLoader(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		p := newPeers(t, b, Config[user]{LocalTTL: time.Hour})
		ctx := ctxT(t)
		if _, err := p.ka.Get(ctx, "1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of absent id: %v, want ErrNotFound", err)
		}
		if err := p.ka.Set(ctx, "1", user{ID: "1", Name: "x"}); err != nil {
			t.Fatal(err)
		}
		if got := mustGet(t, p.ka, "1"); got.Name != "x" {
			t.Fatalf("Get after Set = %+v", got)
		}
		if got := mustGet(t, p.kb, "1"); got.Name != "x" {
			t.Fatalf("peer Get after Set = %+v", got)
		}
		if err := p.ka.Delete(ctx, "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := p.ka.Get(ctx, "1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
		}
		eventually(t, 5*time.Second, "peer drops the deleted value", func() bool {
			_, err := p.kb.Get(ctx, "1")
			return errors.Is(err, ErrNotFound)
		})
		if key := keyOf(t, p.ka, "1"); func() bool {
			n, err := b.raw(t).Exists(ctx, key, keys.LeaseKey(key)).Result()
			return err != nil || n != 0
		}() {
			t.Fatalf("%s or its lease still in Redis after Delete", key)
		}
	})
}

func TestNegativeCaching(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	ctx := ctxT(t)

	db := newDB()
	remembered := newKS(t, c, Config[user]{Name: "neg", Loader: db.load, NegativeTTL: time.Minute})
	for i := 0; i < 3; i++ {
		if _, err := remembered.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v, want ErrNotFound", err)
		}
	}
	if n := db.loads.Load(); n != 1 {
		t.Fatalf("with NegativeTTL the loader ran %d times, want 1", n)
	}
	if s := remembered.Stats(); s.NegativeHits != 2 {
		t.Fatalf("NegativeHits = %d, want 2", s.NegativeHits)
	}
	ttl, _ := srv.Client(t).PTTL(ctx, valueKey(t, srv.Client(t), "neg", "nobody")).Result()
	if ttl <= 0 || ttl > time.Minute {
		t.Fatalf("negative entry PTTL = %v, want (0, 1m]", ttl)
	}

	db2 := newDB()
	forgotten := newKS(t, c, Config[user]{Name: "noneg", Loader: db2.load})
	for i := 0; i < 3; i++ {
		if _, err := forgotten.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get: %v, want ErrNotFound", err)
		}
	}
	if n := db2.loads.Load(); n != 3 {
		t.Fatalf("without NegativeTTL the loader ran %d times, want 3", n)
	}
	if n, _ := srv.Client(t).Exists(ctx, "noneg:nobody", keys.LeaseKey("noneg:nobody")).Result(); n != 0 {
		t.Fatalf("nothing should be left in Redis for an uncached miss, found %d keys", n)
	}
}

func TestInvalidKeysNeverReachRedis(t *testing.T) {
	log := &tripLog{}
	c := singleBackend(t).client(t, log)
	db := newDB()
	k := newKS(t, c, Config[user]{Loader: db.load})
	ctx := ctxT(t)
	for _, id := range []string{"", "a\x00b", "new\nline", "{tag}", strings.Repeat("x", keys.MaxLen+1), "\xff\xfe"} {
		if _, err := k.Get(ctx, id); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(%q): %v, want ErrInvalidKey", id, err)
		}
		if _, err := k.GetMany(ctx, []string{"ok", id}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("GetMany(%q): %v, want ErrInvalidKey", id, err)
		}
		if err := k.Set(ctx, id, user{}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Set(%q): %v, want ErrInvalidKey", id, err)
		}
		if err := k.Delete(ctx, "ok", id); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q): %v, want ErrInvalidKey", id, err)
		}
	}
	if trips := log.snapshot(); len(trips) != 0 {
		t.Fatalf("invalid keys caused %d Redis calls: %v", len(trips), trips.cmds())
	}
	if db.loads.Load() != 0 {
		t.Fatal("invalid keys reached the loader")
	}
	if _, err := NewKeyspace(c, Config[user]{Name: "a:b"}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("keyspace name with ':' accepted: %v", err)
	}
	if _, err := NewKeyspace(c, Config[user]{Name: "user"}); err == nil {
		t.Fatal("duplicate keyspace name accepted")
	}
}

func TestCorruptBytesInRedisAreAMiss(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	db := newDB()
	db.put("1", "one")
	k := newKS(t, c, Config[user]{Loader: db.load})
	raw := srv.Client(t)
	ctx := ctxT(t)

	valid := remote.AppendEnvelope(nil, &remote.Envelope{FreshUntil: remote.ToUnixMilli(time.Now().Add(time.Hour)), Payload: []byte(`{"id":"1","name":"old"}`)})
	flipped := append([]byte(nil), valid...)
	flipped[len(flipped)/2] ^= 0x40
	badJSON := remote.AppendEnvelope(nil, &remote.Envelope{FreshUntil: remote.ToUnixMilli(time.Now().Add(time.Hour)), Payload: []byte(`{"id":`)})
	cases := map[string][]byte{
		"foreign":   []byte("hello, I am somebody else's value"),
		"truncated": valid[:len(valid)-3],
		"bitflip":   flipped,
		"future":    append([]byte{0xC4, 9}, valid[2:]...),
		"bad json":  badJSON,
		"empty":     {},
	}
	want := 0
	for name, b := range cases {
		want++
		if err := raw.Set(ctx, keyOf(t, k, "1"), b, 0).Err(); err != nil {
			t.Fatal(err)
		}
		c.flushSpaces(false)
		got, err := k.Get(ctx, "1")
		if err != nil || got.Name != "one" {
			t.Fatalf("%s: Get = %+v, %v; want the loader's value", name, got, err)
		}
		if s := k.Stats(); s.Corrupt != uint64(want) {
			t.Fatalf("%s: Corrupt = %d, want %d", name, s.Corrupt, want)
		}
		// The next fill overwrote the bad bytes with a valid envelope.
		b2, _ := raw.Get(ctx, keyOf(t, k, "1")).Bytes()
		if _, err := remote.DecodeEnvelope(b2); err != nil {
			t.Fatalf("%s: Redis still holds bad bytes: %v", name, err)
		}
	}
	// Without a loader a corrupt value is simply absent.
	k2 := newKS(t, c, Config[user]{Name: "bare"})
	_ = raw.Set(ctx, keyOf(t, k2, "1"), "garbage", 0)
	if _, err := k2.Get(ctx, "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("corrupt value without loader: %v, want ErrNotFound", err)
	}
	m, err := k2.GetMany(ctx, []string{"1"})
	if err != nil || len(m) != 0 {
		t.Fatalf("GetMany of corrupt value = %v, %v", m, err)
	}
}

func TestRedisDownServesFromLoader(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	db := newDB()
	db.put("1", "one")
	db.put("2", "two")
	k := newKS(t, c, Config[user]{Loader: db.load})
	ctx := ctxT(t)
	mustGet(t, k, "1")

	srv.Kill(t)
	eventually(t, 5*time.Second, "bus notices Redis is gone", func() bool { return !c.Ready() })
	if got := mustGet(t, k, "1"); got.Name != "one" {
		t.Fatalf("Get with Redis down = %+v", got)
	}
	m, err := k.GetMany(ctx, []string{"1", "2", "3"})
	if err != nil || len(m) != 2 || m["2"].Name != "two" {
		t.Fatalf("GetMany with Redis down = %v, %v", m, err)
	}
	if s := k.Stats(); s.RedisErrors == 0 {
		t.Fatalf("RedisErrors = 0 with Redis down: %+v", s)
	}
	err = k.Set(ctx, "1", user{Name: "new"})
	var op *OpError
	if !errors.As(err, &op) || op.Op != "set" || op.Key != "user:1" {
		t.Fatalf("Set with Redis down: %v; want an *OpError naming set and user:1", err)
	}
	if !strings.Contains(err.Error(), "user:1") {
		t.Fatalf("error %q does not name the key", err)
	}
	if err := k.Delete(ctx, "1"); !errors.As(err, &op) || op.Op != "delete" {
		t.Fatalf("Delete with Redis down: %v", err)
	}

	srv.Restart(t)
	waitReady(t, c)
	eventually(t, 5*time.Second, "Redis serves again", func() bool {
		_, err := k.Get(ctx, "2")
		return err == nil && k.Set(ctx, "2", user{ID: "2", Name: "back"}) == nil
	})
	if got := mustGet(t, k, "2"); got.Name != "back" {
		t.Fatalf("after restart Get = %+v", got)
	}
}

func TestCancelledContexts(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	db := newDB()
	db.put("1", "one")
	db.block = func(string) { entered <- struct{}{}; <-release }
	k := newKS(t, c, Config[user]{Loader: db.load})

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := k.Get(cancelled, "1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context: %v", err)
	}
	if err := k.Set(cancelled, "1", user{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set with a cancelled context: %v", err)
	}

	if n := db.loads.Load(); n != 0 {
		t.Fatalf("a cancelled Get started %d loads", n)
	}

	// One caller gives up while the shared load runs; the other still gets
	// the value.
	vals := make(chan user, 1)
	go func() { u, _ := k.Get(context.Background(), "1"); vals <- u }()
	<-entered
	ctx1, cancel1 := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { _, err := k.Get(ctx1, "1"); errs <- err }()
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled waiter got %v", err)
	}
	close(release)
	if u := <-vals; u.Name != "one" {
		t.Fatalf("patient waiter got %+v", u)
	}

	expired, cancel2 := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel2()
	<-expired.Done()
	if _, err := k.GetMany(expired, []string{"zz"}); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetMany with expired context: %v", err)
	}
}

func TestLocalHashCollisionNeverServesAnotherKey(t *testing.T) {
	srv := redistest.Start(t)
	c := newClientHooks(t, srv, &testHooks{hash: func(string) uint64 { return 7 }})
	waitReady(t, c)
	db := newDB()
	db.put("a", "alpha")
	db.put("b", "beta")
	k := newKS(t, c, Config[user]{Loader: db.load})
	for i := 0; i < 5; i++ {
		if u := mustGet(t, k, "a"); u.Name != "alpha" {
			t.Fatalf("Get(a) = %+v", u)
		}
		if u := mustGet(t, k, "b"); u.Name != "beta" {
			t.Fatalf("Get(b) = %+v", u)
		}
	}
	m, err := k.GetMany(ctxT(t), []string{"a", "b"})
	if err != nil || m["a"].Name != "alpha" || m["b"].Name != "beta" {
		t.Fatalf("GetMany = %v, %v", m, err)
	}
}

// GetMany of 200 ids over many slots comes back right, in one pipeline per
// master (one round trip on a single server); of local values, in none.
func TestGetManyOneRoundTrip(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		log := &tripLog{}
		c := b.client(t, log)
		waitReady(t, c)
		k := newKS(t, c, Config[user]{})
		ids, slots, nodes := spread(t, b, "user", 200)
		if nodes != b.masters {
			t.Fatalf("200 keys fall on %d nodes of %d", nodes, b.masters)
		}
		ctx := ctxT(t)
		for _, id := range ids {
			if err := k.Set(ctx, id, user{ID: id, Name: "n" + id}); err != nil {
				t.Fatal(err)
			}
		}
		k.flush(false)
		mustGet(t, k, ids[0]) // the keyspace's epoch is known from here on
		k.flush(false)
		log.reset()
		m, err := k.GetMany(ctx, ids)
		if err != nil || len(m) != len(ids) {
			t.Fatalf("GetMany = %d values, %v", len(m), err)
		}
		for _, id := range ids {
			if m[id].ID != id || m[id].Name != "n"+id {
				t.Fatalf("GetMany[%s] = %+v", id, m[id])
			}
		}
		trips := log.snapshot()
		pipes := trips.pipelines()
		t.Logf("GetMany of %d ids over %d slots: pipelines per node %v", len(ids), slots, pipes)
		if alone := trips.alone(); len(alone) != 0 || trips.pipelined() != len(ids) || len(pipes) != b.masters {
			t.Fatalf("GetMany sent %v alone and %d commands in pipelines to %d nodes; want none alone, %d commands, %d nodes", alone, trips.pipelined(), len(pipes), len(ids), b.masters)
		}
		for addr, n := range pipes {
			if n != 1 {
				t.Fatalf("GetMany sent %d pipelines to %s, want 1", n, addr)
			}
		}
		// Now all local: no round trip at all.
		log.reset()
		if m, _ := k.GetMany(ctx, ids); len(m) != len(ids) {
			t.Fatal("second GetMany incomplete")
		}
		if trips := log.snapshot(); len(trips) != 0 {
			t.Fatalf("GetMany of local values made %d round trips", len(trips))
		}
	})
}

func TestGetManyLoadsMissesWithBatchLoader(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	var mu sync.Mutex
	var calls [][]string
	k := newKS(t, c, Config[user]{BatchLoader: func(_ context.Context, ids []string) (map[string]user, error) {
		mu.Lock()
		calls = append(calls, append([]string(nil), ids...))
		mu.Unlock()
		out := map[string]user{}
		for _, id := range ids {
			if id != "absent" {
				out[id] = user{ID: id, Name: "n" + id}
			}
		}
		return out, nil
	}})
	ctx := ctxT(t)
	if err := k.Set(ctx, "cached", user{ID: "cached"}); err != nil {
		t.Fatal(err)
	}
	m, err := k.GetMany(ctx, []string{"cached", "x", "y", "absent", "x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 3 || m["x"].Name != "nx" || m["y"].Name != "ny" || m["cached"].ID != "cached" {
		t.Fatalf("GetMany = %v", m)
	}
	if len(calls) != 1 || len(calls[0]) != 3 {
		t.Fatalf("BatchLoader calls = %v, want one call with x, y, absent", calls)
	}
	// Filled in Redis: a second client finds them without loading.
	c2 := newClient(t, srv)
	k2 := newKS(t, c2, Config[user]{})
	if u, err := k2.Get(ctx, "y"); err != nil || u.Name != "ny" {
		t.Fatalf("peer Get(y) = %+v, %v", u, err)
	}
}

func TestTTLAndJitter(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	k := newKS(t, c, Config[user]{TTL: 10 * time.Second, TTLJitter: 5 * time.Second})
	ctx := ctxT(t)
	raw := srv.Client(t)
	seen := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		id := fmt.Sprint(i)
		if err := k.Set(ctx, id, user{}); err != nil {
			t.Fatal(err)
		}
		ttl, _ := raw.PTTL(ctx, keyOf(t, k, id)).Result()
		if ttl < 9*time.Second || ttl > 15*time.Second {
			t.Fatalf("PTTL = %v, want within [10s, 15s]", ttl)
		}
		seen[ttl/(100*time.Millisecond)] = true
	}
	if len(seen) < 5 {
		t.Fatalf("jitter spread TTLs over only %d buckets of 100ms", len(seen))
	}
}

func TestLoaderPanicIsAnErrorForEveryWaiter(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	start := make(chan struct{})
	k := newKS(t, c, Config[user]{Loader: func(context.Context, string) (user, error) {
		<-start
		panic("loader bug")
	}})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := k.Get(context.Background(), "p")
			errs <- err
		}()
	}
	eventually(t, 5*time.Second, "a load in flight", func() bool { return k.Stats().Loads == 1 })
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrLoaderPanic) || !strings.Contains(err.Error(), "loader bug") {
			t.Fatalf("waiter got %v, want ErrLoaderPanic", err)
		}
	}
}

func TestRawCodecs(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	ctx := ctxT(t)
	bs, err := NewKeyspace(c, Config[[]byte]{Name: "blob"})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := NewKeyspace(c, Config[string]{Name: "str"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.Set(ctx, "b", []byte{0, 1, 2, 255}); err != nil {
		t.Fatal(err)
	}
	if err := ss.Set(ctx, "s", "héllo"); err != nil {
		t.Fatal(err)
	}
	c.flushSpaces(false)
	b, err := bs.Get(ctx, "b")
	if err != nil || string(b) != "\x00\x01\x02\xff" {
		t.Fatalf("[]byte round trip = %q, %v", b, err)
	}
	s, err := ss.Get(ctx, "s")
	if err != nil || s != "héllo" {
		t.Fatalf("string round trip = %q, %v", s, err)
	}
	env, err := envelopeAt(ctx, srv.Client(t), valueKey(t, srv.Client(t), "str", "s"))
	if err != nil || string(env.Payload) != "héllo" {
		t.Fatalf("string stored as %q (%v), want raw bytes", env.Payload, err)
	}
}

func TestBadValuesAreRefusedBeforeTheNetwork(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	ctx := ctxT(t)
	small := newKS(t, c, Config[user]{MaxValueSize: 64})
	err := small.Set(ctx, "big", user{Name: strings.Repeat("x", 100)})
	if !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("oversized Set: %v, want ErrValueTooLarge", err)
	}
	type weird struct{ C chan int }
	wk, _ := NewKeyspace(c, Config[weird]{Name: "weird"})
	if err := wk.Set(ctx, "w", weird{C: make(chan int)}); err == nil || !strings.Contains(err.Error(), "codec") {
		t.Fatalf("unencodable Set: %v", err)
	}
	if n, _ := srv.Client(t).Exists(ctx, keyOf(t, small, "big"), keyOf(t, wk, "w")).Result(); n != 0 {
		t.Fatal("refused values reached Redis")
	}
}

func TestClosedClient(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	k := newKS(t, c, Config[user]{Loader: newDB().load})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Close() }()
	}
	wg.Wait()
	ctx := ctxT(t)
	if _, err := k.Get(ctx, "1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := k.Set(ctx, "1", user{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if err := k.Delete(ctx, "1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Delete after Close: %v", err)
	}
	if _, err := k.GetMany(ctx, []string{"1"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetMany after Close: %v", err)
	}
}

func TestLocalHitDoesNotAllocate(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	for _, p := range []Policy{LRU, TinyLFU} {
		k := newKS(t, c, Config[user]{Name: fmt.Sprintf("alloc%d", p), LocalPolicy: p, LocalTTL: time.Hour})
		ctx := ctxT(t)
		if err := k.Set(ctx, "42", user{ID: "42", Name: "ada"}); err != nil {
			t.Fatal(err)
		}
		mustGet(t, k, "42")
		mustGet(t, k, "42") // 2Q promotes on the first hit (one allocation), then never again
		hits := k.Stats().LocalHits
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := k.Get(ctx, "42"); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Fatalf("policy %d: a local hit allocates %.1f times", p, allocs)
		}
		if k.Stats().LocalHits-hits < 1000 {
			t.Fatalf("policy %d: the measured Gets were not local hits", p)
		}
	}
}

func TestCloseWhileCallsAreInFlight(t *testing.T) {
	c := newClient(t, redistest.Start(t))
	waitReady(t, c)
	db := newDB()
	for i := 0; i < 20; i++ {
		db.put(fmt.Sprint(i), "v")
	}
	k := newKS(t, c, Config[user]{Loader: db.load, StaleWhileRevalidate: time.Minute})
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for g := 0; g < 16; g++ {
		g := g
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id := fmt.Sprint((g + i) % 20)
				var err error
				switch i % 3 {
				case 0:
					_, err = k.Get(context.Background(), id)
				case 1:
					err = k.Set(context.Background(), id, user{Name: "w"})
				default:
					_, err = k.GetMany(context.Background(), []string{id, "x"})
				}
				once.Do(func() { close(started) })
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil && !errors.Is(err, ErrNotFound) && !strings.Contains(err.Error(), "context canceled") {
					t.Errorf("call during Close: %v", err)
					return
				}
			}
		}()
	}
	<-started
	var cw sync.WaitGroup
	for i := 0; i < 3; i++ {
		cw.Add(1)
		go func() { defer cw.Done(); _ = c.Close() }()
	}
	cw.Wait()
	wg.Wait() // every caller saw ErrClosed and stopped; goleak in TestMain checks the rest
}
