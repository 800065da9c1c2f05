package tieredprom

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tiercache/tiercache/tiered"
)

const histogram = "tiercache_get_duration_seconds"

// cumulative returns the histogram's count at upper bound le.
func cumulative(t *testing.T, h *dto.Histogram, le float64) uint64 {
	t.Helper()
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	t.Fatalf("no bucket le=%v", le)
	return 0
}

func TestObserverHistogramsByTier(t *testing.T) {
	obs, err := NewObserver()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, obs)
	k := newKeyspace(t, c, "user", 2*time.Millisecond)
	ctx := ctxT(t)
	if _, err := k.Get(ctx, "1"); err != nil { // the Loader
		t.Fatal(err)
	}
	if err := k.FlushLocal(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Get(ctx, "1"); err != nil { // Redis
		t.Fatal(err)
	}
	const hits = tiered.LocalHitSampling * 300
	for i := 0; i < hits; i++ {
		if _, err := k.Get(ctx, "1"); err != nil {
			t.Fatal(err)
		}
	}
	fams := newScraper(t, obs).scrape()
	if f := fams[histogram]; f.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("%s: %v", histogram, f)
	}
	of := func(tier string) *dto.Histogram {
		return series(t, fams, histogram, map[string]string{"keyspace": "user", "tier": tier}).GetHistogram()
	}

	loader := of("loader")
	if loader.GetSampleCount() != 1 || loader.GetSampleSum() < 0.002 || cumulative(t, loader, 0.001) != 0 {
		t.Errorf("the load of 2ms: %d samples, sum %vs, %d below 1ms", loader.GetSampleCount(), loader.GetSampleSum(), cumulative(t, loader, 0.001))
	}
	if redis := of("redis"); redis.GetSampleCount() != 1 {
		t.Errorf("Redis hits: %d, want 1", redis.GetSampleCount())
	}
	// One in 64 local hits, so about 300: a binomial this far off is
	// practically impossible.
	local := of("local")
	if n := local.GetSampleCount(); n < 200 || n > 400 {
		t.Errorf("%d local hits observed of %d, want about %d", n, hits, hits/tiered.LocalHitSampling)
	}
	if fast := cumulative(t, local, 100e-6); float64(fast) < 0.9*float64(local.GetSampleCount()) {
		t.Errorf("only %d of %d local hits under 100µs", fast, local.GetSampleCount())
	}
	if n := len(local.GetBucket()); n != 28+1 { // and +Inf
		t.Errorf("%d buckets, want 28 and +Inf", n)
	}
	for _, tier := range []string{"stale", "none"} {
		if n := of(tier).GetSampleCount(); n != 0 {
			t.Errorf("tier %s: %d samples", tier, n)
		}
	}
}

func TestObserverRecordsFailedCalls(t *testing.T) {
	obs, err := NewObserver(WithBuckets(0.001, 1))
	if err != nil {
		t.Fatal(err)
	}
	_, end := obs.StartMiss(context.Background(), "user")
	end(tiered.MissEnd{Latency: 5 * time.Millisecond, Err: errors.New("cancelled before any tier")})
	fams := newScraper(t, obs).scrape()
	h := series(t, fams, histogram, map[string]string{"keyspace": "user", "tier": "none"}).GetHistogram()
	if h.GetSampleCount() != 1 || cumulative(t, h, 0.001) != 0 || cumulative(t, h, 1) != 1 || len(h.GetBucket()) != 2+1 {
		t.Fatalf("a failed call: %v", h)
	}
}

func TestNewObserverRejectsBadBuckets(t *testing.T) {
	for _, b := range [][]float64{{}, {1, 1}, {2, 1}, {math.NaN()}} {
		if obs, err := NewObserver(WithBuckets(b...)); err == nil {
			t.Errorf("buckets %v: %v, no error", b, obs)
		}
	}
}

// What the hit path pays when a hit is sampled, and a miss at its end: no
// allocation once the keyspace has been seen.
func TestObserverDoesNotAllocate(t *testing.T) {
	obs, err := NewObserver()
	if err != nil {
		t.Fatal(err)
	}
	obs.LocalHit("user", time.Microsecond)
	if n := testing.AllocsPerRun(1000, func() { obs.LocalHit("user", time.Microsecond) }); n != 0 {
		t.Errorf("LocalHit allocates %v times", n)
	}
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() {
		_, end := obs.StartMiss(ctx, "user")
		end(tiered.MissEnd{Tier: tiered.TierRedis, Latency: time.Millisecond})
	}); n != 0 {
		t.Errorf("a miss allocates %v times", n)
	}
}
