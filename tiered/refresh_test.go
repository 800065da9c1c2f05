package tiered

import (
	"context"
	"errors"
	"math"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/internal/redistest"
)

// loadCost is what every load of the early-refresh tests costs: enough for
// the envelope to record a non-zero delta (it has millisecond resolution),
// without which XFetch never fires.
const loadCost = 30 * time.Millisecond

// minDraw is the smallest positive value rand.Float64 returns.
var minDraw = math.Ldexp(1, -53)

// xf and rf are xfetch and refreshFrom on plain nanoseconds.
func xf(now, expiry, delta int64, beta, r float64) bool {
	return xfetch(clock.Time(now), clock.Time(expiry), time.Duration(delta), beta, r)
}

func rf(expiry, delta int64, beta float64) int64 {
	return int64(refreshFrom(clock.Time(expiry), time.Duration(delta), beta))
}

func TestXFetchProbability(t *testing.T) {
	const draws = 200_000
	const expiry = int64(100 * time.Second)
	rng := rand.New(rand.NewSource(1))
	for _, tc := range []struct {
		gap, delta time.Duration
		beta       float64
	}{
		{0, 100 * time.Millisecond, 1},
		{50 * time.Millisecond, 100 * time.Millisecond, 1},
		{100 * time.Millisecond, 100 * time.Millisecond, 1},
		{200 * time.Millisecond, 100 * time.Millisecond, 1},
		{300 * time.Millisecond, 50 * time.Millisecond, 2},
		{10 * time.Millisecond, 30 * time.Millisecond, 0.5},
		{time.Second, 100 * time.Millisecond, 2},
		{2 * time.Second, time.Second, 3},
	} {
		now := expiry - int64(tc.gap)
		want := math.Exp(-float64(tc.gap) / (float64(tc.delta) * tc.beta))
		fired := 0
		for i := 0; i < draws; i++ {
			if xf(now, expiry, int64(tc.delta), tc.beta, rng.Float64()) {
				fired++
			}
		}
		if got := float64(fired) / draws; math.Abs(got-want) > 0.01 {
			t.Errorf("gap %v, delta %v, beta %v: fired in %.4f of draws, want %.4f", tc.gap, tc.delta, tc.beta, got, want)
		}
	}

	fixed := []float64{0, minDraw, 1e-300, 0.5, 1 - minDraw, 1}
	for _, r := range fixed {
		for _, now := range []int64{0, expiry - 1, expiry, expiry + int64(time.Hour)} {
			for _, off := range []struct {
				delta int64
				beta  float64
			}{{0, 1}, {int64(time.Second), 0}, {int64(time.Second), -1}, {-1, 1}} {
				if xf(now, expiry, off.delta, off.beta, r) {
					t.Errorf("xf(now %d, expiry %d, delta %d, beta %v, r %g) = true: early refresh is off", now, expiry, off.delta, off.beta, r)
				}
			}
			// Past expiry any draw refreshes: -ln(r) >= 0 for r in (0, 1].
			if now >= expiry && !xf(now, expiry, int64(time.Millisecond), 1, r) {
				t.Errorf("xf(now %d >= expiry %d, r %g) = false", now, expiry, r)
			}
		}
		if got := rf(expiry, 0, 1); got != math.MaxInt64 {
			t.Errorf("refreshFrom with delta 0 = %d, want never", got)
		}
		if got := rf(expiry, int64(time.Second), 0); got != math.MaxInt64 {
			t.Errorf("refreshFrom with beta 0 = %d, want never", got)
		}
	}
	for i := 0; i < 1000; i++ {
		if r := rng.Float64(); r > 0 && !xf(expiry+int64(i), expiry, int64(time.Second), 1, r) {
			t.Fatalf("xfetch at expiry+%dns, r %g = false", i, r)
		}
	}

	// refreshFrom is a lower bound: before it no draw rand.Float64 can
	// return (r >= 2^-53) fires. It is also close to the true bound, or hits
	// would take the slow path for nothing.
	for _, tc := range []struct {
		expiry, delta int64
		beta          float64
	}{
		{expiry, int64(time.Millisecond), 1},
		{expiry, int64(30 * time.Millisecond), 1},
		{expiry, int64(time.Second), 5},
		{expiry, 1, 0.001},
		{int64(1) << 60, int64(10 * time.Second), 2.5},
	} {
		from := rf(tc.expiry, tc.delta, tc.beta)
		if bound := float64(tc.delta) * tc.beta * 37; float64(tc.expiry-from) > bound {
			t.Errorf("rf(%d, %d, %v) = %d: %d before expiry, more than delta*beta*37", tc.expiry, tc.delta, tc.beta, from, tc.expiry-from)
		}
		for _, now := range []int64{from - 1, from - tc.delta, from - int64(time.Hour)} {
			if xf(now, tc.expiry, tc.delta, tc.beta, minDraw) {
				t.Errorf("xf(now %d < refreshFrom %d, expiry %d, delta %d, beta %v, r 2^-53) = true", now, from, tc.expiry, tc.delta, tc.beta)
			}
			for i := 0; i < 1000; i++ {
				if r := rng.Float64(); r > 0 && xf(now, tc.expiry, tc.delta, tc.beta, r) {
					t.Fatalf("xf(now %d < refreshFrom %d, r %g) = true", now, from, r)
				}
			}
		}
	}
}

// countDraws returns hooks whose XFetch draw is r, counting the draws.
func countDraws(r float64, n *atomic.Int64) *testHooks {
	return &testHooks{rand: func() float64 {
		n.Add(1)
		return r
	}}
}

// costlyThenGated returns a loader whose every call costs loadCost; the
// first free calls read db directly, later ones go through g.
func costlyThenGated(db *testDB, g *gate, free int64) func(context.Context, string) (user, error) {
	var n atomic.Int64
	gated := g.loader(db)
	return func(ctx context.Context, id string) (user, error) {
		time.Sleep(loadCost) // the cost of a query, not synchronisation
		if n.Add(1) <= free {
			return db.load(ctx, id)
		}
		return gated(ctx, id)
	}
}

// peekLocal returns what k's local tier holds for id, fresh or not.
func peekLocal(k *Keyspace[user], id string) (user, bool) {
	e, ok := k.local.Get(k.hash(id), id, int64(k.client.clock.Precise()))
	return e.value, ok
}

// refreshIdle reports whether k has no background refresh queued or running.
func refreshIdle(k *Keyspace[user]) bool {
	idle := true
	k.refreshing.Range(func(_, v any) bool {
		// A deadline other than MaxInt64 only holds back the next
		// attempt (another process held the lease): nothing is running.
		if v.(int64) == math.MaxInt64 {
			idle = false
		}
		return idle
	})
	return idle
}

// freshUntil returns the fresh-until time (Unix ms) of id's value in Redis.
func freshUntil(t *testing.T, raw *redis.Client, k *Keyspace[user], id string) int64 {
	t.Helper()
	env, err := envelopeAt(ctxT(t), raw, keyOf(t, k, id))
	if err != nil {
		t.Fatal(err)
	}
	return int64(env.FreshUntil)
}

// waitStale waits until id's value is past its fresh TTL both in Redis
// (untilMs, its fresh-until on the wall clock) and in k's local tier.
func waitStale(t *testing.T, k *Keyspace[user], id string, untilMs int64) {
	t.Helper()
	eventually(t, 10*time.Second, k.Name()+":"+id+" goes stale", func() bool {
		if time.Now().UnixMilli() < untilMs {
			return false
		}
		_, st := k.lookup(k.hash(id), id, k.client.clock.Precise())
		return st != hitFresh
	})
}

func TestEarlyRefreshFiresUnderLease(t *testing.T) {
	// delta 30ms * beta 3 * 36.8 = 3.3s > TTL: every hit of a fresh value
	// draws, and the tiny r makes every draw fire.
	cfg := func(loader func(context.Context, string) (user, error)) Config[user] {
		return Config[user]{Loader: loader, TTL: 3 * time.Second, TTLJitter: -1, EarlyRefreshBeta: 3}
	}
	srv := redistest.Start(t)
	raw := srv.Client(t)
	db := newDB()
	v1 := db.put("x", "v1")
	var aDraws, bDraws atomic.Int64
	a := newClientHooks(t, srv, countDraws(1e-300, &aDraws))
	b := newClientHooks(t, srv, countDraws(1e-300, &bDraws))
	waitReady(t, a, b)
	g := newGate(t)
	ua := newKS(t, a, cfg(costlyThenGated(db, g, 1)))
	var bLoads atomic.Int64
	ub := newKS(t, b, cfg(countingLoader(db, &bLoads)))
	ctx := ctxT(t)

	if u := mustGet(t, ua, "x"); u != v1 {
		t.Fatalf("A's first Get = %+v, want %+v", u, v1)
	}
	if n := aDraws.Load(); n != 0 {
		t.Fatalf("a miss drew %d times for an early refresh", n)
	}
	if u := mustGet(t, ub, "x"); u != v1 { // from Redis, with A's delta
		t.Fatalf("B's first Get = %+v, want %+v", u, v1)
	}
	v2 := db.put("x", "v2") // the cache learns of it by refreshing

	// A hit draws, fires, and returns the current value without waiting
	// for the refresh, whose load is held at the gate.
	if r := awaitGet(t, goGet(ctx, ua, "x")); r.err != nil || r.u != v1 {
		t.Fatalf("A's hit = %+v, %v; want %+v", r.u, r.err, v1)
	}
	if aDraws.Load() == 0 {
		t.Fatal("A's hit did not draw")
	}
	g.waitEntered(t)
	if !leaseHeld(t, raw, valueKey(t, raw, "user", "x")) {
		t.Fatal("the early refresh loads without holding the lease")
	}
	// Another process's early refresh finds the lease taken and loads
	// nothing.
	if u := mustGet(t, ub, "x"); u != v1 {
		t.Fatalf("B's hit = %+v, want %+v", u, v1)
	}
	if bDraws.Load() == 0 {
		t.Fatal("B's hit did not draw")
	}
	eventually(t, waitFor, "B's refresh gives up", func() bool { return refreshIdle(ub) })
	if n, s := bLoads.Load(), ub.Stats(); n != 0 || s.EarlyRefreshes != 0 {
		t.Fatalf("B loaded %d times behind A's lease (stats %+v)", n, s)
	}

	g.open()
	eventually(t, waitFor, "A's early refresh ends", func() bool { return refreshIdle(ua) })
	if s := ua.Stats(); s.EarlyRefreshes != 1 || s.Loads != 2 || s.FillsRefused != 0 {
		t.Fatalf("A stats %+v, want one early refresh, 2 loads and no refused fill", s)
	}
	if u, ok := redisUser(t, raw, valueKey(t, raw, "user", "x")); !ok || u != v2 {
		t.Fatalf("Redis holds %+v (present %v) after the refresh, want %+v", u, ok, v2)
	}
	if leaseHeld(t, raw, valueKey(t, raw, "user", "x")) {
		t.Fatal("the refresh left its lease behind")
	}
	if u, ok := peekLocal(ua, "x"); !ok || u != v2 {
		t.Fatalf("A's local tier holds %+v (present %v) after the refresh, want %+v", u, ok, v2)
	}
}

// With early refresh off, or a value far from expiry, a hit never draws.
func TestEarlyRefreshNeverFires(t *testing.T) {
	srv := redistest.Start(t)
	var draws atomic.Int64
	c := newClientHooks(t, srv, countDraws(1e-300, &draws))
	waitReady(t, c)
	db := newDB()
	want := db.put("x", "v1")
	loader := func(ctx context.Context, id string) (user, error) {
		time.Sleep(loadCost) // the cost of a query, not synchronisation
		return db.load(ctx, id)
	}
	for _, cfg := range []Config[user]{
		{Name: "off", Loader: loader, TTL: time.Second, TTLJitter: -1, EarlyRefreshBeta: NoEarlyRefresh},
		{Name: "far", Loader: loader, TTL: time.Hour},
	} {
		k := newKS(t, c, cfg)
		for i := 0; i < 100; i++ {
			if u := mustGet(t, k, "x"); u != want {
				t.Fatalf("%s: Get = %+v, want %+v", cfg.Name, u, want)
			}
		}
		if s := k.Stats(); s.EarlyRefreshes != 0 || s.Loads != 1 || !refreshIdle(k) {
			t.Fatalf("%s: stats %+v, refresh idle %v; want one load and no refresh", cfg.Name, s, refreshIdle(k))
		}
	}
	if n := draws.Load(); n != 0 {
		t.Fatalf("hits drew %d times", n)
	}
	if n := len(c.refreshQ); n != 0 {
		t.Fatalf("%d refreshes queued", n)
	}
}

// An early refresh that read the database before a Delete must not cache
// what it read, in Redis or in any local tier.
func TestEarlyRefreshStaleWriteBack(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	db := newDB()
	v1 := db.put("x", "v1")
	var draws atomic.Int64
	a := newClientHooks(t, srv, countDraws(1e-300, &draws))
	b := newClient(t, srv)
	waitReady(t, a, b)
	g := newGate(t)
	ua := newKS(t, a, Config[user]{Loader: costlyThenGated(db, g, 1), TTL: 3 * time.Second, TTLJitter: -1, EarlyRefreshBeta: 3})
	ub := newKS(t, b, Config[user]{Loader: db.load})
	ctx := ctxT(t)

	mustGet(t, ua, "x")
	mustGet(t, ub, "x")
	if u := mustGet(t, ua, "x"); u != v1 { // a hit: the refresh reads v1 and waits
		t.Fatalf("A's hit = %+v, want %+v", u, v1)
	}
	g.waitEntered(t)
	v2 := db.put("x", "v2")
	if err := ub.Delete(ctx, "x"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	eventually(t, waitFor, "A applies the Delete", func() bool {
		_, ok := peekLocal(ua, "x")
		return !ok
	})
	g.open()
	eventually(t, waitFor, "A's refresh ends", func() bool { return refreshIdle(ua) })
	if u, ok := redisUser(t, raw, valueKey(t, raw, "user", "x")); ok {
		t.Fatalf("Redis holds %+v after the Delete: a stale write-back", u)
	}
	for name, k := range map[string]*Keyspace[user]{"A": ua, "B": ub} {
		if u, ok := peekLocal(k, "x"); ok {
			t.Fatalf("%s's local tier holds %+v after the Delete", name, u)
		}
	}
	if u := mustGet(t, ua, "x"); u != v2 {
		t.Fatalf("A's next Get = %+v, want %+v", u, v2)
	}
	if u := mustGet(t, ub, "x"); u != v2 {
		t.Fatalf("B's next Get = %+v, want %+v", u, v2)
	}
	if s := ua.Stats(); s.FillsRefused != 1 {
		t.Fatalf("A FillsRefused = %d, want 1 (stats %+v)", s.FillsRefused, s)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	const readers = 50
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c := readyClient(t, srv)
	db := newDB()
	v1 := db.put("r", "v1")
	g := newGate(t)
	var n atomic.Int64
	gated := g.loader(db)
	k := newKS(t, c, Config[user]{
		Loader: func(ctx context.Context, id string) (user, error) {
			if n.Add(1) == 1 {
				return db.load(ctx, id)
			}
			return gated(ctx, id)
		},
		TTL: time.Second, TTLJitter: -1, StaleWhileRevalidate: 10 * time.Second, EarlyRefreshBeta: NoEarlyRefresh,
	})
	ctx := ctxT(t)

	mustGet(t, k, "r")
	v2 := db.put("r", "v2") // the cache learns of it by revalidating
	waitStale(t, k, "r", freshUntil(t, raw, k, "r"))

	// The refresh's load is held at the gate: a Get that waited for it
	// would not return.
	start := make(chan struct{})
	results := make(chan getResult, readers)
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			u, err := k.Get(ctx, "r")
			results <- getResult{u: u, err: err}
		}()
	}
	close(start)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("stale Gets waited for the revalidation")
	}
	close(results)
	for r := range results {
		if r.err != nil || r.u != v1 {
			t.Fatalf("stale Get = %+v, %v; want %+v at once", r.u, r.err, v1)
		}
	}
	g.waitEntered(t)
	if !leaseHeld(t, raw, valueKey(t, raw, "user", "r")) {
		t.Fatal("the revalidation loads without holding the lease")
	}
	if s := k.Stats(); s.StaleServed == 0 || s.Revalidations != 0 {
		t.Fatalf("stats %+v while revalidating, want StaleServed >= 1", s)
	}

	g.open()
	eventually(t, waitFor, "the revalidation ends", func() bool { return refreshIdle(k) })
	if u := mustGet(t, k, "r"); u != v2 {
		t.Fatalf("Get after the revalidation = %+v, want %+v", u, v2)
	}
	if u, ok := redisUser(t, raw, valueKey(t, raw, "user", "r")); !ok || u != v2 {
		t.Fatalf("Redis holds %+v (present %v), want %+v", u, ok, v2)
	}
	if s := k.Stats(); s.Loads != 2 || s.Revalidations != 1 || g.calls.Load() != 1 {
		t.Fatalf("stats %+v, refresh loads %d; want exactly one revalidating load", s, g.calls.Load())
	}
}

func TestStaleIfError(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	a, b := newClient(t, srv), newClient(t, srv)
	waitReady(t, a, b)
	db := newDB()
	v1 := db.put("s", "v1")
	var failing atomic.Bool
	loader := func(ctx context.Context, id string) (user, error) {
		if failing.Load() {
			return user{}, errBoom
		}
		return db.load(ctx, id)
	}
	cfg := func(name string, staleIfError time.Duration) Config[user] {
		return Config[user]{Name: name, Loader: loader, TTL: time.Second, TTLJitter: -1,
			EarlyRefreshBeta: NoEarlyRefresh, StaleIfError: staleIfError}
	}
	on, off := newKS(t, a, cfg("on", time.Hour)), newKS(t, a, cfg("off", 0))
	onB := newKS(t, b, cfg("on", time.Hour)) // never read: its local tier is empty
	mustGet(t, on, "s")
	mustGet(t, off, "s")
	failing.Store(true)
	onUntil, offUntil := freshUntil(t, raw, on, "s"), freshUntil(t, raw, off, "s")
	waitStale(t, on, "s", onUntil)
	waitStale(t, off, "s", offUntil)
	ctx := ctxT(t)

	// Redis up, holding the stale value.
	for name, k := range map[string]*Keyspace[user]{"local and Redis": on, "Redis only": onB} {
		if u, err := k.Get(ctx, "s"); err != nil || u != v1 {
			t.Fatalf("stale in %s, loader failing: Get = %+v, %v; want %+v", name, u, err, v1)
		}
		if s := k.Stats(); s.StaleOnError != 1 || s.LoadErrors != 1 {
			t.Fatalf("stale in %s: stats %+v, want one load error answered stale", name, s)
		}
	}
	if leaseHeld(t, raw, "on:s") {
		t.Fatal("the failed load left its lease behind")
	}
	if _, err := off.Get(ctx, "s"); !errors.Is(err, errBoom) {
		t.Fatalf("without StaleIfError: Get = %v, want errBoom", err)
	}

	// Redis down: the stale value is only in the local tier.
	srv.Kill(t)
	eventually(t, waitFor, "bus notices Redis is gone", func() bool { return !a.Ready() })
	if u, err := on.Get(ctx, "s"); err != nil || u != v1 {
		t.Fatalf("Redis down, loader failing: Get = %+v, %v; want the local %+v", u, err, v1)
	}
	if s := on.Stats(); s.StaleOnError != 2 || s.RedisErrors == 0 {
		t.Fatalf("Redis down: stats %+v, want a second stale answer and a Redis error", s)
	}
	if _, err := off.Get(ctx, "s"); !errors.Is(err, errBoom) {
		t.Fatalf("Redis down, without StaleIfError: Get = %v, want errBoom", err)
	}
}

func TestRefreshQueueBoundedAndDropped(t *testing.T) {
	const ids = 5
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c := readyClient(t, srv, func(o *Options) { o.RefreshWorkers, o.RefreshQueue = 1, 1 })
	db := newDB()
	g := newGate(t)
	var n atomic.Int64
	gated := g.loader(db)
	k := newKS(t, c, Config[user]{
		Loader: func(ctx context.Context, id string) (user, error) {
			if n.Add(1) <= ids {
				return db.load(ctx, id)
			}
			return gated(ctx, id)
		},
		TTL: time.Second, TTLJitter: -1, StaleWhileRevalidate: 10 * time.Second, EarlyRefreshBeta: NoEarlyRefresh,
	})
	id := func(i int) string { return string(rune('a' + i)) }
	for i := 0; i < ids; i++ {
		db.put(id(i), "v1")
		mustGet(t, k, id(i))
	}
	last := freshUntil(t, raw, k, id(ids-1))
	for i := 0; i < ids; i++ {
		waitStale(t, k, id(i), last)
	}

	// The first refresh takes the only worker and stays at the gate, the
	// second fills the queue, the rest find it full.
	mustGet(t, k, id(0))
	g.waitEntered(t)
	mustGet(t, k, id(0)) // one refresh per key and process: not queued again
	if n, s := len(c.refreshQ), k.Stats(); n != 0 || s.RefreshesDropped != 0 {
		t.Fatalf("a second stale Get of a key being refreshed queued %d refreshes, dropped %d", n, s.RefreshesDropped)
	}
	for i := 1; i < ids; i++ {
		if u := mustGet(t, k, id(i)); u.Name != "v1" {
			t.Fatalf("stale Get(%s) = %+v", id(i), u)
		}
	}
	if s := k.Stats(); s.RefreshesDropped != ids-2 || s.StaleServed != ids+1 || s.Revalidations != 0 {
		t.Fatalf("stats %+v, want %d refreshes dropped, %d stale served", s, ids-2, ids+1)
	}
	if g.calls.Load() != 1 {
		t.Fatalf("%d refresh loads with one worker", g.calls.Load())
	}

	// Close cancels the held refresh and stops the worker (goleak checks
	// it is gone).
	closed := make(chan struct{})
	go func() { _ = c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitFor):
		t.Fatal("Close did not return while a refresh was running")
	}
	k.refresh(refreshJob[user]{id: "late", hash: k.hash("late"), loader: k.configLoader()})
	if s := k.Stats(); s.RefreshesDropped != ids-1 {
		t.Fatalf("RefreshesDropped = %d after a refresh on a closed Client, want %d", s.RefreshesDropped, ids-1)
	}
}
