package tieredotel

import (
	"context"
	"errors"
	"math"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// newTracers returns a TracerProvider that hands each ended span to an
// in-memory exporter at once.
func newTracers(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

func attributesOf(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		out[kv.Key] = kv.Value
	}
	return out
}

// histogramPoints returns the latency histogram's points by tier, for one
// keyspace.
func histogramPoints(t *testing.T, ms map[string]metricdata.Metrics, keyspace string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	m, ok := ms["tiercache.get.duration"]
	if !ok || m.Unit != "s" {
		t.Fatalf("tiercache.get.duration: %+v", m)
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("tiercache.get.duration is a %T", m.Data)
	}
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, p := range h.DataPoints {
		if ks, _ := p.Attributes.Value("keyspace"); ks.AsString() == keyspace {
			tier, _ := p.Attributes.Value("tier")
			out[tier.AsString()] = p
		}
	}
	return out
}

func TestObserverSpansOnTheMissPathOnly(t *testing.T) {
	tp, spans := newTracers(t)
	mp, reader := newMeters(t)
	obs, err := NewObserver(WithTracerProvider(tp), WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, obs)
	var loaderSpans atomic.Int32
	k, err := tiered.NewKeyspace(c, tiered.Config[user]{
		Name: "user", LocalTTL: time.Hour,
		Loader: func(ctx context.Context, id string) (user, error) {
			if trace.SpanFromContext(ctx).SpanContext().IsValid() {
				loaderSpans.Add(1)
			}
			time.Sleep(2 * time.Millisecond) // a load of measurable length
			switch id {
			case "absent":
				return user{}, tiered.ErrNotFound
			case "broken":
				return user{}, errors.New("the database is down")
			}
			return user{ID: id}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := tp.Tracer("test").Start(ctxT(t), "request")
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
	if _, err := k.Get(ctx, "absent"); !errors.Is(err, tiered.ErrNotFound) {
		t.Fatal(err)
	}
	if _, err := k.Get(ctx, "broken"); err == nil {
		t.Fatal("a failing Loader: no error")
	}
	parent.End()

	got := spans.GetSpans()
	if len(got) != 5 { // four misses and the parent: no span for a local hit
		t.Fatalf("%d spans, want 4 tiercache.get and the parent", len(got))
	}
	want := []struct {
		tier, lease string
		loaded      bool
	}{{"loader", "won", true}, {"redis", "none", false}, {"loader", "won", true}, {"loader", "won", true}}
	for i, w := range want {
		s := got[i]
		a := attributesOf(s)
		if s.Name != "tiercache.get" || s.Parent.SpanID() != parent.SpanContext().SpanID() || s.SpanKind != trace.SpanKindInternal {
			t.Errorf("span %d: %s, parent %v, kind %v", i, s.Name, s.Parent.SpanID(), s.SpanKind)
		}
		if a["keyspace"].AsString() != "user" || a["tier"].AsString() != w.tier || a["lease"].AsString() != w.lease || a["ids"].AsInt64() != 1 {
			t.Errorf("span %d: attributes %v, want tier %s lease %s", i, a, w.tier, w.lease)
		}
		if load := a["load_seconds"].AsFloat64(); w.loaded != (load >= 0.002) || !w.loaded && load != 0 {
			t.Errorf("span %d: load_seconds %v", i, load)
		}
	}
	if a := attributesOf(got[2]); !a["not_found"].AsBool() || got[2].Status.Code != codes.Unset {
		t.Errorf("ErrNotFound: %v, status %v", a, got[2].Status)
	}
	if s := got[3]; s.Status.Code != codes.Error || len(s.Events) != 1 || s.Events[0].Name != "exception" {
		t.Errorf("a failed load: status %v, events %v", s.Status, s.Events)
	}
	if n := loaderSpans.Load(); n != 3 {
		t.Errorf("the Loader ran under a span %d times of 3", n)
	}

	byTier := histogramPoints(t, collect(t, reader), "user")
	if p := byTier["loader"]; p.Count != 3 || p.Sum < 0.006 {
		t.Errorf("loader tier: %d, sum %v", p.Count, p.Sum)
	}
	if p := byTier["redis"]; p.Count != 1 {
		t.Errorf("redis tier: %d", p.Count)
	}
	local := byTier["local"]
	if local.Count < 200 || local.Count > 400 {
		t.Errorf("%d local hits recorded of %d, want about %d", local.Count, hits, hits/tiered.LocalHitSampling)
	}
	if !reflect.DeepEqual(local.Bounds, metricspec.LatencyBuckets()) {
		t.Errorf("bounds %v", local.Bounds)
	}
	var fast uint64 // at most 100µs
	for i, b := range local.Bounds {
		if b <= 100e-6 {
			fast += local.BucketCounts[i]
		}
	}
	if float64(fast) < 0.9*float64(local.Count) {
		t.Errorf("only %d of %d local hits under 100µs", fast, local.Count)
	}
}

func TestObserverOptions(t *testing.T) {
	mp, reader := newMeters(t)
	tp, spans := newTracers(t)
	obs, err := NewObserver(WithMeterProvider(mp), WithTracerProvider(tp), WithBuckets(0.001, 1), WithAttributes(attribute.String("client", "a")))
	if err != nil {
		t.Fatal(err)
	}
	_, end := obs.StartMiss(context.Background(), "user")
	end(tiered.MissEnd{Latency: 5 * time.Millisecond, Err: context.Canceled})
	p := histogramPoints(t, collect(t, reader), "user")["none"]
	if client, _ := p.Attributes.Value("client"); p.Count != 1 || !reflect.DeepEqual(p.Bounds, []float64{0.001, 1}) || client.AsString() != "a" {
		t.Errorf("a failed call: %+v", p)
	}
	if s := spans.GetSpans(); len(s) != 1 || attributesOf(s[0])["client"].AsString() != "a" || attributesOf(s[0])["tier"].AsString() != "none" {
		t.Errorf("spans %v", s)
	}
	for _, b := range [][]float64{{}, {1, 1}, {2, 1}, {math.NaN()}} {
		if obs, err := NewObserver(WithMeterProvider(mp), WithBuckets(b...)); err == nil {
			t.Errorf("buckets %v: %v, no error", b, obs)
		}
	}
}

// What the hit path pays when a hit is sampled: no allocation once the
// keyspace has been seen.
func TestObserverLocalHitDoesNotAllocate(t *testing.T) {
	mp, _ := newMeters(t)
	obs, err := NewObserver(WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	obs.LocalHit("user", time.Microsecond)
	if n := testing.AllocsPerRun(1000, func() { obs.LocalHit("user", time.Microsecond) }); n != 0 {
		t.Errorf("LocalHit allocates %v times", n)
	}
}
