package tiered

// The verifier, both ways: a change in the source that no invalidation
// reported is found; writes made through the cache are not counted.

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestVerifierFindsAChangeNoInvalidationReported(t *testing.T) {
	srv := redistest.Start(t)
	core, logs := observer.New(zap.WarnLevel)
	c := readyClient(t, srv, func(o *Options) { o.Logger = zap.New(core) })
	db := newDB()
	db.put("a", "v1")
	db.put("b", "v1")
	var verifying atomic.Int64
	load := func(ctx context.Context, id string) (user, error) {
		if Verifying(ctx) {
			verifying.Add(1)
		}
		return db.load(ctx, id)
	}
	k := newKS(t, c, Config[user]{Loader: load, LocalTTL: time.Hour, VerifyRate: 1, VerifyDelay: 50 * time.Millisecond})
	mustGet(t, k, "a") // a load is not a hit
	mustGet(t, k, "b")
	db.put("a", "v2") // changed in the source; no Set, no Delete
	start := time.Now()
	mustGet(t, k, "a") // a local hit of v1: sampled
	mustGet(t, k, "b") // a local hit of the unchanged b
	eventually(t, 2*50*time.Millisecond+5*time.Second, "the inconsistency reported", func() bool {
		s := k.Stats()
		return s.Inconsistent == 1 && s.Verified == 2
	})
	t.Logf("reported %v after the hit (VerifyDelay 50ms, twice)", time.Since(start).Round(time.Millisecond))
	s := k.Stats()
	if s.Loads != 2 || s.VerifyLoads != 3 || verifying.Load() != 3 { // a: two looks at the source; b: one
		t.Fatalf("stats %+v: the verifier's loads must not count as loads", s)
	}
	if u, ok := k.Peek("a"); !ok || u.Name != "v1" {
		t.Fatalf("the verifier's load filled the cache: Peek = %+v, %v", u, ok)
	}
	if n := logs.FilterMessageSnippet("no longer has").Len(); n != 1 {
		t.Fatalf("%d warnings, want 1: %v", n, logs.All())
	}
}

// Twenty seconds of writes through Set and Delete, with peers reading,
// report no inconsistency over at least 10,000 checks.
func TestVerifierCountsNothingWhenWritesGoThroughTheCache(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	const ids = 50
	for i := 0; i < ids; i++ {
		db.put(fmt.Sprint(i), "v")
	}
	cfg := Config[user]{Loader: db.load, LocalTTL: time.Hour, VerifyRate: 0.5, VerifyDelay: 200 * time.Millisecond}
	p := newPeers(t, serverBackend(srv), cfg)
	ctx := ctxT(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	for w, k := range []*Keyspace[user]{p.ka, p.kb, p.ka, p.kb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := k.Get(ctx, fmt.Sprint(rng.Intn(ids))); err == nil {
					reads.Add(1)
				}
			}
		}()
	}
	rng := rand.New(rand.NewSource(99))
	end := time.Now().Add(20 * time.Second)
	writes := 0
	for time.Now().Before(end) {
		id := fmt.Sprint(rng.Intn(ids))
		k := []*Keyspace[user]{p.ka, p.kb}[writes%2]
		if rng.Intn(10) == 0 {
			db.del(id) // the source first, then the cache, as a service does
			if err := k.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
		} else {
			u := db.put(id, "w")
			if err := k.Set(ctx, id, u); err != nil {
				t.Fatal(err)
			}
		}
		writes++
		time.Sleep(2 * time.Millisecond) // pacing the writer, not synchronisation
	}
	close(stop)
	wg.Wait()
	// Let the last checks run.
	eventually(t, 10*time.Second, "the queued checks done", func() bool {
		return len(p.ka.verify.jobs) == 0 && len(p.kb.verify.jobs) == 0
	})
	time.Sleep(cfg.VerifyDelay + 100*time.Millisecond) // the checks in hand finish: they wait VerifyDelay
	sa, sb := p.ka.Stats(), p.kb.Stats()
	checks := sa.Verified + sb.Verified
	t.Logf("%d reads, %d writes; %d checks (%d dropped), %d inconsistent", reads.Load(), writes, checks, sa.VerifyDropped+sb.VerifyDropped, sa.Inconsistent+sb.Inconsistent)
	if checks < 10_000 {
		t.Fatalf("only %d checks; want at least 10,000", checks)
	}
	if n := sa.Inconsistent + sb.Inconsistent; n != 0 {
		t.Fatalf("%d inconsistencies reported for writes made through the cache", n)
	}
}
