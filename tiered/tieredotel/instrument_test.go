package tieredotel

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// newMeters returns a MeterProvider and the ManualReader that collects it.
func newMeters(t *testing.T) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return mp, reader
}

// collect returns the metrics of one collection, by name.
func collect(t *testing.T, reader *sdkmetric.ManualReader) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != scope {
			t.Errorf("scope %q", sm.Scope.Name)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// point is one data point of an asynchronous instrument, whatever its type.
type point struct {
	value      float64
	attributes attribute.Set
}

// points returns the data points of m and what kind of instrument it is:
// "counter", "updown" or "gauge".
func points(t *testing.T, m metricdata.Metrics) (string, []point) {
	t.Helper()
	var out []point
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, point{float64(p.Value), p.Attributes})
		}
		return sumKind(d.IsMonotonic, d.Temporality), out
	case metricdata.Sum[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Value, p.Attributes})
		}
		return sumKind(d.IsMonotonic, d.Temporality), out
	case metricdata.Gauge[int64]:
		for _, p := range d.DataPoints {
			out = append(out, point{float64(p.Value), p.Attributes})
		}
	case metricdata.Gauge[float64]:
		for _, p := range d.DataPoints {
			out = append(out, point{p.Value, p.Attributes})
		}
	default:
		t.Fatalf("%s: data %T", m.Name, m.Data)
	}
	return "gauge", out
}

func sumKind(monotonic bool, temporality metricdata.Temporality) string {
	switch {
	case temporality != metricdata.CumulativeTemporality:
		return "delta"
	case monotonic:
		return "counter"
	}
	return "updown"
}

// valueOf returns the value of the point whose attributes are kv.
func valueOf(t *testing.T, ms map[string]metricdata.Metrics, name string, kv ...attribute.KeyValue) float64 {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	_, ps := points(t, m)
	want := attribute.NewSet(kv...)
	for _, p := range ps {
		if p.attributes.Equals(&want) {
			return p.value
		}
	}
	t.Fatalf("%s: no point with %v among %d", name, want.Encoded(attribute.DefaultEncoder()), len(ps))
	return 0
}

// wantKind is the instrument each field must have, by the package's rule.
func wantKind(m metricspec.Metric) string {
	switch {
	case m.Kind == metricspec.Counter:
		return "counter"
	case m.Kind == metricspec.Gauge && m.Integer:
		return "updown"
	}
	return "gauge"
}

func TestInstrumentExportsEveryField(t *testing.T) {
	mp, reader := newMeters(t)
	c := newClient(t, nil)
	if err := Instrument(c, WithMeterProvider(mp)); err != nil {
		t.Fatal(err)
	}
	k := newKeyspace(t, c, "user", 0)
	ctx := ctxT(t)
	for _, id := range []string{"1", "1", "1", "1", "2", "absent", "absent"} {
		if _, err := k.Get(ctx, id); err != nil && !errors.Is(err, tiered.ErrNotFound) {
			t.Fatal(err)
		}
	}
	settle(t, c)
	ms := collect(t, reader)
	stats, cstats := k.Stats(), c.Stats()
	user := attribute.String("keyspace", "user")

	for name, want := range map[string]float64{
		"tiercache.local_hits": 4, "tiercache.loads": 3, "tiercache.negative_hits": 1, "tiercache.local_entries": 3,
	} {
		if got := valueOf(t, ms, name, user); got != want {
			t.Errorf("%s{keyspace=user} = %v, want %v", name, got, want)
		}
	}
	for _, m := range metricspec.Keyspace.Metrics {
		name := "tiercache." + m.Name
		if kind, _ := points(t, ms[name]); kind != wantKind(m) || ms[name].Description != m.Help {
			t.Errorf("Stats.%s: %s is a %s %q, want a %s %q", m.Field, name, kind, ms[name].Description, wantKind(m), m.Help)
		}
		if got, want := valueOf(t, ms, name, user), fieldValue(stats, m.Field); got != want {
			t.Errorf("%s = %v, Stats.%s = %v", name, got, m.Field, want)
		}
	}
	for _, m := range metricspec.Client.Metrics {
		name := "tiercache." + m.Name
		if kind, _ := points(t, ms[name]); kind != wantKind(m) || ms[name].Description != m.Help {
			t.Errorf("ClientStats.%s: %s is a %s %q, want a %s %q", m.Field, name, kind, ms[name].Description, wantKind(m), m.Help)
		}
		if m.Seconds && ms[name].Unit != "s" {
			t.Errorf("%s: unit %q", name, ms[name].Unit)
		}
		switch m.Field {
		case "BreakerState":
			for state, want := range map[string]float64{"closed": 1, "open": 0, "half-open": 0} {
				if got := valueOf(t, ms, name, attribute.String("state", state)); got != want {
					t.Errorf("%s{state=%s} = %v, want %v", name, state, got, want)
				}
			}
		case "SinceHealthy": // an age, read a moment apart
			if got := valueOf(t, ms, name); got < 0 || got > 2 {
				t.Errorf("%s = %v", name, got)
			}
		default:
			if got, want := valueOf(t, ms, name), fieldValue(cstats, m.Field); got != want {
				t.Errorf("%s = %v, ClientStats.%s = %v", name, got, m.Field, want)
			}
		}
	}

	// A keyspace created after Instrument is in the next collection.
	orders := newKeyspace(t, c, "order", 0)
	if _, err := orders.Get(ctx, "7"); err != nil {
		t.Fatal(err)
	}
	ms = collect(t, reader)
	if got := valueOf(t, ms, "tiercache.loads", attribute.String("keyspace", "order")); got != 1 {
		t.Errorf("loads of a keyspace created later: %v, want 1", got)
	}
}

// Two Clients on one MeterProvider, told apart by an attribute each.
func TestInstrumentTwoClients(t *testing.T) {
	mp, reader := newMeters(t)
	a, b := newClient(t, nil), newClient(t, nil)
	for name, c := range map[string]*tiered.Client{"a": a, "b": b} {
		if err := Instrument(c, WithMeterProvider(mp), WithAttributes(attribute.String("client", name))); err != nil {
			t.Fatal(err)
		}
	}
	ka := newKeyspace(t, a, "user", 0)
	if _, err := ka.Get(ctxT(t), "1"); err != nil {
		t.Fatal(err)
	}
	newKeyspace(t, b, "user", 0)
	ms := collect(t, reader)
	for client, want := range map[string]float64{"a": 1, "b": 0} {
		if got := valueOf(t, ms, "tiercache.loads", attribute.String("client", client), attribute.String("keyspace", "user")); got != want {
			t.Errorf("loads of client %s: %v, want %v", client, got, want)
		}
	}
}
