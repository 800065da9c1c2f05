package tiered

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// recordingObserver keeps every report.
type recordingObserver struct {
	mu     sync.Mutex
	hits   []time.Duration
	starts int
	ends   []MissEnd
}

func (o *recordingObserver) LocalHit(keyspace string, latency time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hits = append(o.hits, latency)
}

type spanKey struct{}

func (o *recordingObserver) StartMiss(ctx context.Context, keyspace string) (context.Context, func(MissEnd)) {
	o.mu.Lock()
	o.starts++
	o.mu.Unlock()
	ctx = context.WithValue(ctx, spanKey{}, keyspace)
	return ctx, func(e MissEnd) {
		o.mu.Lock()
		defer o.mu.Unlock()
		o.ends = append(o.ends, e)
	}
}

func (o *recordingObserver) last(t *testing.T) MissEnd {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.ends) == 0 || len(o.ends) != o.starts {
		t.Fatalf("%d misses started, %d ended", o.starts, len(o.ends))
	}
	return o.ends[len(o.ends)-1]
}

func TestObserverSeesSampledHitsAndEveryMiss(t *testing.T) {
	srv := redistest.Start(t)
	obs := &recordingObserver{}
	withObserver := func(o *Options) { o.Observer = obs }
	a, b := newClient(t, srv, withObserver), newClient(t, srv)
	waitReady(t, a, b)
	db := newDB()
	db.put("1", "one")
	var sawSpan atomic.Bool
	k := newKS(t, a, Config[user]{LocalTTL: time.Hour, Loader: func(ctx context.Context, id string) (user, error) {
		sawSpan.Store(ctx.Value(spanKey{}) == "user")
		time.Sleep(2 * time.Millisecond) // a load that takes measurable time
		return db.load(ctx, id)
	}})
	kb := newKS(t, b, Config[user]{LocalTTL: time.Hour})

	mustGet(t, k, "1")
	if e := obs.last(t); e.Tier != TierLoader || e.Lease != LeaseWon || e.Load < 2*time.Millisecond || e.Latency < e.Load || e.IDs != 1 || e.Err != nil {
		t.Fatalf("a loaded miss reported %+v", e)
	}
	if !sawSpan.Load() {
		t.Fatal("the loader did not run under the observer's context")
	}
	if err := kb.Set(ctxT(t), "2", user{ID: "2"}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, k, "2")
	if e := obs.last(t); e.Tier != TierRedis || e.Lease != LeaseNone || e.Load != 0 {
		t.Fatalf("a Redis hit reported %+v", e)
	}
	if _, err := k.Get(ctxT(t), "absent"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if e := obs.last(t); e.Tier != TierLoader || !errors.Is(e.Err, ErrNotFound) {
		t.Fatalf("a miss the loader did not find reported %+v", e)
	}
	if _, err := k.GetMany(ctxT(t), []string{"1", "3", "4"}); err != nil {
		t.Fatal(err)
	}
	if e := obs.last(t); e.IDs != 2 || e.Tier != TierLoader {
		t.Fatalf("GetMany of one local hit and two misses reported %+v", e)
	}

	const hits = 64 * 1000
	for i := 0; i < hits; i++ {
		mustGet(t, k, "1")
	}
	obs.mu.Lock()
	n := len(obs.hits)
	obs.mu.Unlock()
	// One in 64 on average: 1000 expected; a binomial this far off is
	// practically impossible.
	if n < 700 || n > 1300 {
		t.Fatalf("%d local hits reported of %d, want about %d", n, hits, hits/LocalHitSampling)
	}
}

func TestLocalHitWithObserverDoesNotAllocate(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv, func(o *Options) { o.Observer = &recordingObserver{} })
	waitReady(t, c)
	k := newKS(t, c, Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	if err := k.Set(ctx, "1", user{ID: "1"}); err != nil {
		t.Fatal(err)
	}
	// Sampled hits append to the recorder's slice, which allocates now and
	// then: measure the library, not the recorder, with hits the sampler
	// skips counted alongside.
	c.options.Observer = nopObserver{}
	if n := testing.AllocsPerRun(10_000, func() { _, _ = k.Get(ctx, "1") }); n != 0 {
		t.Fatalf("a local hit with an observer allocates %v times", n)
	}
}

type nopObserver struct{}

func (nopObserver) LocalHit(string, time.Duration) {}
func (nopObserver) StartMiss(ctx context.Context, _ string) (context.Context, func(MissEnd)) {
	return ctx, func(MissEnd) {}
}
