package tiered

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/keys"
)

// These tests run several Clients against one real redis-server; each Client
// has its own connections, so each stands for a separate process.

// waitFor bounds every wait on a channel: long enough for a slow CI machine,
// short enough that a hang fails the test rather than the test binary.
const waitFor = 10 * time.Second

// gate holds loads at a point the test chooses. Each call reads its row
// first, as a real loader reads the database, then reports on entered and
// waits until open is called or its context ends (Client.Close cancels the
// shared load context). After open, calls pass straight through.
type gate struct {
	entered chan string
	release chan struct{}
	once    sync.Once
	calls   atomic.Int64
}

func newGate(t *testing.T) *gate {
	g := &gate{entered: make(chan string, 16), release: make(chan struct{})}
	t.Cleanup(g.open) // never leave a loader blocked, even when a test fails
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

func (g *gate) loader(db *testDB) func(context.Context, string) (user, error) {
	return func(ctx context.Context, id string) (user, error) {
		g.calls.Add(1)
		u, err := db.load(ctx, id)
		select {
		case g.entered <- id:
		default:
		}
		select {
		case <-g.release:
		case <-ctx.Done():
			return user{}, ctx.Err()
		}
		return u, err
	}
}

// waitEntered returns once a load is held at the gate.
func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(waitFor):
		t.Fatal("the gated loader was never called")
	}
}

// race is the stage of most lease tests: two Clients, A and B, over a new
// redis-server (raw inspects it), both subscribed, a database they load
// from and a gate to hold loads at. Each test gives A and B keyspaces of
// its own: their roles (holder, waiter) differ. bLog records B's round
// trips.
type race struct {
	raw  *redis.Client
	db   *testDB
	g    *gate
	a, b *Client
	bLog *tripLog
}

func newRace(t *testing.T) race {
	t.Helper()
	srv := redistest.Start(t)
	r := race{raw: srv.Client(t), db: newDB(), bLog: &tripLog{}}
	r.a, r.b = newClient(t, srv), serverBackend(srv).client(t, r.bLog)
	waitReady(t, r.a, r.b)
	r.g = newGate(t) // its cleanup opens it before the Clients close
	return r
}

// countingLoader loads from db and counts its calls.
func countingLoader(db *testDB, n *atomic.Int64) func(context.Context, string) (user, error) {
	return func(ctx context.Context, id string) (user, error) {
		n.Add(1)
		return db.load(ctx, id)
	}
}

type getResult struct {
	u    user
	err  error
	took time.Duration
}

// goGet runs k.Get in the background, as a request of another goroutine.
func goGet(ctx context.Context, k *Keyspace[user], id string) <-chan getResult {
	ch := make(chan getResult, 1)
	go func() {
		start := time.Now()
		u, err := k.Get(ctx, id)
		ch <- getResult{u, err, time.Since(start)}
	}()
	return ch
}

func awaitGet(t *testing.T, ch <-chan getResult) getResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		t.Fatal("Get did not return")
		return getResult{}
	}
}

// redisUser decodes the user stored at key in Redis; ok is false when the
// key is absent.
func redisUser(t *testing.T, raw *redis.Client, key string) (u user, ok bool) {
	t.Helper()
	u, err := userAt(ctxT(t), raw, key)
	if errors.Is(err, redis.Nil) {
		return user{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return u, true
}

func leaseHeld(t *testing.T, raw *redis.Client, key string) bool {
	t.Helper()
	n, err := raw.Exists(ctxT(t), keys.LeaseKey(key)).Result()
	if err != nil {
		t.Fatalf("EXISTS lease of %s: %v", key, err)
	}
	return n == 1
}

// A herd of 2 Clients x 500 goroutines (100 on a cluster, whose six servers
// share the machine's cores with the herd) on one cold key loads it once.
func TestHerdLoadsOnce(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		db := newDB()
		want := db.put("hot", "herd")
		var loads atomic.Int64
		loader := func(ctx context.Context, id string) (user, error) {
			loads.Add(1)
			time.Sleep(300 * time.Millisecond) // the cost of a slow query, not synchronisation
			return db.load(ctx, id)
		}
		p := newPeers(t, b, Config[user]{Loader: loader})

		perClient := 500
		if b.cluster != nil {
			perClient = 100
		}
		ctx := ctxT(t)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var wrong, failed atomic.Int64
		var errMu sync.Mutex
		var firstErr error
		for _, k := range []*Keyspace[user]{p.ka, p.kb} {
			for i := 0; i < perClient; i++ {
				k := k
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					u, err := k.Get(ctx, "hot")
					switch {
					case err != nil:
						if failed.Add(1) == 1 {
							errMu.Lock()
							firstErr = err
							errMu.Unlock()
						}
					case u != want:
						wrong.Add(1)
					}
				}()
			}
		}
		close(start)
		wg.Wait()
		if n := failed.Load(); n > 0 {
			errMu.Lock()
			defer errMu.Unlock()
			t.Fatalf("%d Gets failed, first: %v", n, firstErr)
		}
		if n := wrong.Load(); n > 0 {
			t.Fatalf("%d Gets returned something other than %+v", n, want)
		}
		sa, sb := p.ka.Stats(), p.kb.Stats()
		if n := loads.Load(); n != 1 {
			t.Fatalf("the loader ran %d times for %d concurrent Gets in 2 processes, want 1 (A %+v, B %+v)", n, 2*perClient, sa, sb)
		}
		if sa.LeasesWon+sb.LeasesWon != 1 || sa.LeaseTimeouts+sb.LeaseTimeouts != 0 {
			t.Fatalf("lease stats: A %+v, B %+v", sa, sb)
		}
	})
}

// A load that read the database before a write must not be cached after
// the write, whichever write it was.
func TestStaleWriteBackRefused(t *testing.T) {
	for _, write := range []string{"Delete", "Set"} {
		write := write
		t.Run(write, func(t *testing.T) {
			race := newRace(t)
			v1 := race.db.put("7", "v1")
			ua := newKS(t, race.a, Config[user]{Loader: race.db.load})
			ub := newKS(t, race.b, Config[user]{Loader: race.g.loader(race.db)})
			ctx := ctxT(t)

			got := goGet(ctx, ub, "7")
			race.g.waitEntered(t) // B holds the lease and has read v1
			if !leaseHeld(t, race.raw, valueKey(t, race.raw, "user", "7")) {
				t.Fatal("B loads without holding the lease")
			}
			v2 := race.db.put("7", "v2")
			var err error
			if write == "Delete" {
				err = ua.Delete(ctx, "7")
			} else {
				err = ua.Set(ctx, "7", v2)
			}
			if err != nil {
				t.Fatalf("%s: %v", write, err)
			}
			race.g.open()
			r := awaitGet(t, got)
			if r.err != nil || r.u != v1 {
				t.Fatalf("B's Get = %+v, %v; want v1 %+v (true when it was read)", r.u, r.err, v1)
			}
			if u, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "7")); ok && u != v2 {
				t.Fatalf("Redis holds %+v after the %s of v2: a stale write-back", u, write)
			}
			if s := ub.Stats(); s.FillsRefused != 1 {
				t.Fatalf("B FillsRefused = %d, want 1 (stats %+v)", s.FillsRefused, s)
			}
			if u := mustGet(t, ub, "7"); u != v2 {
				t.Fatalf("B's next Get = %+v, want v2 %+v", u, v2)
			}
			if u := mustGet(t, ua, "7"); u != v2 {
				t.Fatalf("A's next Get = %+v, want v2 %+v", u, v2)
			}
			if u, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "7")); !ok || u != v2 {
				t.Fatalf("Redis holds %+v (present %v), want v2", u, ok)
			}
		})
	}
}

// A lease holder that dies without releasing blocks others for at most
// LeaseWait per read, and nobody for longer than LeaseTTL.
func TestLeaseHolderDies(t *testing.T) {
	const leaseTTL, leaseWait = 300 * time.Millisecond, 200 * time.Millisecond
	race := newRace(t)
	want := race.db.put("d", "dies")
	ua := newKS(t, race.a, Config[user]{Loader: race.g.loader(race.db), LeaseTTL: leaseTTL})
	var bLoads atomic.Int64
	ub := newKS(t, race.b, Config[user]{Loader: countingLoader(race.db, &bLoads), LeaseTTL: leaseTTL, LeaseWait: leaseWait})

	dying := goGet(context.Background(), ua, "d")
	race.g.waitEntered(t)
	// The holder's process dies: its connections go away (so it cannot
	// release the lease on its way out), and its loader ends with Close.
	if err := race.a.options.Redis.Close(); err != nil {
		t.Fatal(err)
	}
	if err := race.a.Close(); err != nil {
		t.Fatal(err)
	}
	if r := awaitGet(t, dying); r.err == nil {
		t.Fatalf("the dead holder's Get returned %+v without error", r.u)
	}
	if !leaseHeld(t, race.raw, valueKey(t, race.raw, "user", "d")) {
		t.Fatal("the lease is gone: the test needs a holder that died holding it")
	}

	start := time.Now()
	u, err := ub.Get(ctxT(t), "d")
	took := time.Since(start)
	if err != nil || u != want {
		t.Fatalf("B's Get = %+v, %v; want %+v", u, err, want)
	}
	if limit := leaseTTL + leaseWait + 2*time.Second; took > limit {
		t.Fatalf("B's Get took %v behind a dead holder, want < %v", took, limit)
	}
	if n := bLoads.Load(); n != 1 {
		t.Fatalf("B's loader ran %d times, want 1", n)
	}
	if s := ub.Stats(); s.LeasesLost != 1 || s.LeaseTimeouts != 1 {
		t.Fatalf("B stats %+v, want one lost lease that timed out", s)
	}
	// Once the dead lease expires, B takes a lease of its own and caches.
	eventually(t, leaseTTL+2*time.Second, "the dead holder's lease expires", func() bool {
		return !leaseHeld(t, race.raw, valueKey(t, race.raw, "user", "d"))
	})
	if u := mustGet(t, ub, "d"); u != want {
		t.Fatalf("B's Get after expiry = %+v", u)
	}
	if s := ub.Stats(); s.LeasesWon != 1 {
		t.Fatalf("B LeasesWon = %d after the dead lease expired, want 1", s.LeasesWon)
	}
	if got, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "d")); !ok || got != want {
		t.Fatalf("Redis holds %+v (present %v), want %+v", got, ok, want)
	}
}

// A load that outlives its lease is not cached: another process may have
// loaded (and cached) a newer value in the meantime.
func TestSlowLoaderLosesLease(t *testing.T) {
	race := newRace(t)
	v1 := race.db.put("s", "v1")
	ua := newKS(t, race.a, Config[user]{Loader: race.g.loader(race.db), LeaseTTL: 100 * time.Millisecond})
	ub := newKS(t, race.b, Config[user]{Loader: race.db.load})
	ctx := ctxT(t)

	slow := goGet(ctx, ua, "s")
	race.g.waitEntered(t)
	eventually(t, 5*time.Second, "A's lease expires while A loads", func() bool {
		return !leaseHeld(t, race.raw, valueKey(t, race.raw, "user", "s"))
	})
	v2 := race.db.put("s", "v2")
	if u := mustGet(t, ub, "s"); u != v2 {
		t.Fatalf("B's Get = %+v, want v2 %+v", u, v2)
	}
	if s := ub.Stats(); s.LeasesWon != 1 {
		t.Fatalf("B LeasesWon = %d, want 1", s.LeasesWon)
	}
	race.g.open()
	if r := awaitGet(t, slow); r.err != nil || r.u != v1 {
		t.Fatalf("A's Get = %+v, %v; want v1 %+v", r.u, r.err, v1)
	}
	if s := ua.Stats(); s.FillsRefused != 1 {
		t.Fatalf("A FillsRefused = %d, want 1 (stats %+v)", s.FillsRefused, s)
	}
	if u, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "s")); !ok || u != v2 {
		t.Fatalf("Redis holds %+v (present %v), want B's v2", u, ok)
	}
	if u := mustGet(t, ua, "s"); u != v2 {
		t.Fatalf("A's next Get = %+v: its expired load was cached locally", u)
	}
}

func TestLeaseLoserWaitsForFill(t *testing.T) {
	race := newRace(t)
	want := race.db.put("w", "from the holder")
	ua := newKS(t, race.a, Config[user]{Loader: race.g.loader(race.db)})
	var bLoads atomic.Int64
	ub := newKS(t, race.b, Config[user]{Loader: countingLoader(race.db, &bLoads)})
	ctx := ctxT(t)

	holder := goGet(ctx, ua, "w")
	race.g.waitEntered(t)
	race.bLog.reset()
	waiter := goGet(ctx, ub, "w")
	// Let B find the lease taken and poll it a few times.
	eventually(t, 5*time.Second, "B polls the lease or loads", func() bool {
		return race.bLog.snapshot().scriptCalls() >= 3 || bLoads.Load() > 0
	})
	if n := bLoads.Load(); n != 0 {
		t.Fatalf("B called its loader %d times while the holder was loading", n)
	}
	race.g.open()
	if r := awaitGet(t, holder); r.err != nil || r.u != want {
		t.Fatalf("A's Get = %+v, %v", r.u, r.err)
	}
	r := awaitGet(t, waiter)
	if r.err != nil || r.u != want {
		t.Fatalf("B's Get = %+v, %v; want the holder's %+v", r.u, r.err, want)
	}
	if n := bLoads.Load(); n != 0 {
		t.Fatalf("B called its loader %d times, want 0", n)
	}
	s := ub.Stats()
	if s.LeasesLost != 1 || s.LeaseWaits != 1 || s.LeaseTimeouts != 0 || s.Loads != 0 {
		t.Fatalf("B stats %+v, want LeasesLost 1, LeaseWaits 1, no timeout, no load", s)
	}
}

func TestLeaseWaitTimeout(t *testing.T) {
	const leaseWait = 100 * time.Millisecond
	race := newRace(t)
	want := race.db.put("t", "timeout")
	ua := newKS(t, race.a, Config[user]{Loader: race.g.loader(race.db)})
	var bLoads atomic.Int64
	ub := newKS(t, race.b, Config[user]{Loader: countingLoader(race.db, &bLoads), LeaseWait: leaseWait})
	ctx := ctxT(t)

	holder := goGet(ctx, ua, "t")
	race.g.waitEntered(t)
	start := time.Now()
	u, err := ub.Get(ctx, "t")
	took := time.Since(start)
	if err != nil || u != want {
		t.Fatalf("B's Get = %+v, %v; want %+v", u, err, want)
	}
	// The wait may end up to one backoff step (25ms) early.
	if took < leaseWait-30*time.Millisecond {
		t.Fatalf("B gave up after %v, before LeaseWait %v", took, leaseWait)
	}
	if n := bLoads.Load(); n != 1 {
		t.Fatalf("B's loader ran %d times, want 1", n)
	}
	s := ub.Stats()
	if s.LeasesLost != 1 || s.LeaseTimeouts != 1 || s.LeaseWaits != 0 || s.LocalEntries != 0 {
		t.Fatalf("B stats %+v, want one timeout and nothing cached locally", s)
	}
	// B cached nothing, and the holder's lease still stands.
	if _, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "t")); ok {
		t.Fatal("B's load after a lease timeout was cached in Redis")
	}
	if !leaseHeld(t, race.raw, valueKey(t, race.raw, "user", "t")) {
		t.Fatal("the holder's lease is gone")
	}
	race.g.open()
	if r := awaitGet(t, holder); r.err != nil || r.u != want {
		t.Fatalf("A's Get = %+v, %v", r.u, r.err)
	}
	if got, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "t")); !ok || got != want {
		t.Fatalf("Redis holds %+v (present %v) after the holder's fill", got, ok)
	}
}

func TestGetManyTakesLeasesInOneRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	log := &tripLog{}
	c := serverBackend(srv).client(t, log)
	waitReady(t, c)
	var mu sync.Mutex
	var calls [][]string
	k := newKS(t, c, Config[user]{BatchLoader: func(_ context.Context, ids []string) (map[string]user, error) {
		mu.Lock()
		calls = append(calls, slices.Clone(ids))
		mu.Unlock()
		out := make(map[string]user, len(ids))
		for _, id := range ids {
			out[id] = user{ID: id, Name: "n" + id}
		}
		return out, nil
	}})
	ctx := ctxT(t)
	idsFrom := func(prefix string) []string {
		ids := make([]string, 10)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return ids
	}
	// Warm up: the server learns the scripts (go-redis re-sends by EVAL
	// after a NOSCRIPT) and the pool holds a connection.
	if m, err := k.GetMany(ctx, idsFrom("warm")); err != nil || len(m) != 10 {
		t.Fatalf("warm-up GetMany = %d values, %v", len(m), err)
	}
	log.reset()
	mu.Lock()
	calls = nil
	mu.Unlock()

	ids := idsFrom("cold")
	m, err := k.GetMany(ctx, ids)
	if err != nil || len(m) != 10 {
		t.Fatalf("GetMany = %d values, %v", len(m), err)
	}
	for _, id := range ids {
		if m[id].Name != "n"+id {
			t.Fatalf("GetMany[%s] = %+v", id, m[id])
		}
	}
	trips := log.snapshot().names()
	repeat := func(cmd string) []string {
		out := make([]string, len(ids))
		for i := range out {
			out[i] = cmd
		}
		return out
	}
	want := [][]string{repeat("get"), repeat("evalsha"), repeat("evalsha")}
	if len(trips) != len(want) {
		t.Fatalf("GetMany of 10 cold ids made %d round trips %v, want 3: GETs, leases, fills", len(trips), trips)
	}
	for i := range want {
		if !slices.Equal(trips[i], want[i]) {
			t.Fatalf("round trip %d = %v, want %v", i, trips[i], want[i])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) == 1 {
		slices.Sort(calls[0])
	}
	if len(calls) != 1 || !slices.Equal(calls[0], ids) {
		t.Fatalf("BatchLoader calls = %v, want one with all 10 ids", calls)
	}
	for _, id := range ids {
		key := valueKey(t, raw, "user", id)
		if u, ok := redisUser(t, raw, key); !ok || u.ID != id {
			t.Fatalf("Redis %s = %+v (present %v)", key, u, ok)
		}
		if leaseHeld(t, raw, key) {
			t.Fatalf("lease of %s left behind after the fill", key)
		}
	}
}

// A holder whose load fails gives its lease back at once: the next process
// takes the lease and caches, instead of waiting LeaseWait behind a lease
// nobody will fill for LeaseTTL.
func TestLoaderErrorReleasesLease(t *testing.T) {
	t.Run("Get", func(t *testing.T) {
		srv := redistest.Start(t)
		raw := srv.Client(t)
		c := readyClient(t, srv)
		k := newKS(t, c, Config[user]{Loader: func(context.Context, string) (user, error) {
			return user{}, fmt.Errorf("query: %w", errBoom)
		}})
		if _, err := k.Get(ctxT(t), "e"); !errors.Is(err, errBoom) {
			t.Fatalf("Get = %v, want errBoom", err)
		}
		if leaseHeld(t, raw, valueKey(t, raw, "user", "e")) {
			t.Fatal("the failed holder's lease is still in Redis")
		}
		if s := k.Stats(); s.LeasesWon != 1 || s.LoadErrors != 1 {
			t.Fatalf("stats %+v", s)
		}
	})

	t.Run("Waiter", func(t *testing.T) {
		race := newRace(t)
		want := race.db.put("e", "after the error")
		failing := race.g.loader(race.db)
		ua := newKS(t, race.a, Config[user]{Loader: func(ctx context.Context, id string) (user, error) {
			if _, err := failing(ctx, id); err != nil {
				return user{}, err
			}
			return user{}, errBoom
		}})
		ub := newKS(t, race.b, Config[user]{Loader: race.db.load})
		ctx := ctxT(t)

		holder := goGet(ctx, ua, "e")
		race.g.waitEntered(t)
		waiter := goGet(ctx, ub, "e")
		eventually(t, 5*time.Second, "B finds the lease taken", func() bool { return ub.Stats().LeasesLost == 1 })
		race.g.open()
		if r := awaitGet(t, holder); !errors.Is(r.err, errBoom) {
			t.Fatalf("A's Get = %+v, %v; want errBoom", r.u, r.err)
		}
		r := awaitGet(t, waiter)
		if r.err != nil || r.u != want {
			t.Fatalf("B's Get = %+v, %v", r.u, r.err)
		}
		// B took the released lease rather than timing out behind it.
		if s := ub.Stats(); s.LeasesWon != 1 || s.LeaseTimeouts != 0 {
			t.Fatalf("B stats %+v, want a won lease and no timeout", s)
		}
		if u, ok := redisUser(t, race.raw, valueKey(t, race.raw, "user", "e")); !ok || u != want {
			t.Fatalf("Redis holds %+v (present %v), want B's fill", u, ok)
		}
	})

	// GetMany's holders must give back the leases of ids whose load failed
	// or found nothing (uncached without NegativeTTL), as Get's do.
	t.Run("GetMany", func(t *testing.T) {
		srv := redistest.Start(t)
		raw := srv.Client(t)
		c := readyClient(t, srv)
		k := newKS(t, c, Config[user]{Loader: func(_ context.Context, id string) (user, error) {
			if strings.HasPrefix(id, "absent") {
				return user{}, ErrNotFound
			}
			return user{}, errBoom
		}})
		if _, err := k.GetMany(ctxT(t), []string{"e1", "e2"}); !errors.Is(err, errBoom) {
			t.Fatalf("GetMany = %v, want errBoom", err)
		}
		if m, err := k.GetMany(ctxT(t), []string{"absent", "absent2"}); err != nil || len(m) != 0 {
			t.Fatalf("GetMany of absent ids = %v, %v", m, err)
		}
		for _, id := range []string{"e1", "e2", "absent", "absent2"} {
			if leaseHeld(t, raw, valueKey(t, raw, "user", id)) {
				t.Errorf("GetMany left the lease of %q in Redis after its load failed or found nothing", id)
			}
		}
	})
}
