package metricspec

import (
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

func TestEveryFieldHasAMetric(t *testing.T) {
	check := func(typ reflect.Type, ms []Metric, unsupported []string) {
		t.Helper()
		if len(unsupported) > 0 {
			t.Errorf("fields no rule covers: %v", unsupported)
		}
		if len(ms) != typ.NumField() {
			t.Errorf("%s has %d fields, %d metrics", typ.Name(), typ.NumField(), len(ms))
		}
		for _, m := range ms {
			// A Help without ": " is a field without a doc comment.
			if m.Kind == 0 || m.Name == "" || !strings.Contains(m.Help, ": ") {
				t.Errorf("%s.%s: %+v", typ.Name(), m.Field, m)
			}
		}
	}
	check(reflect.TypeOf(tiered.Stats{}), Keyspace.Metrics, Keyspace.Unsupported)
	check(reflect.TypeOf(tiered.ClientStats{}), Client.Metrics, Client.Unsupported)

	names := map[string]string{}
	for _, ms := range [][]Metric{Keyspace.Metrics, Client.Metrics} {
		for _, m := range ms {
			if other, dup := names[m.Name]; dup {
				t.Errorf("%s and %s are both %q", other, m.Field, m.Name)
			}
			names[m.Name] = m.Field
		}
	}
}

func TestKinds(t *testing.T) {
	want := map[string]Metric{
		"LocalHits":     {Name: "local_hits", Kind: Counter, Integer: true},
		"LocalEntries":  {Name: "local_entries", Kind: Gauge, Integer: true},
		"SinceHealthy":  {Name: "since_healthy", Kind: Gauge, Seconds: true},
		"Degraded":      {Name: "degraded", Kind: Counter, Seconds: true},
		"ReplayPending": {Name: "replay_pending", Kind: Gauge, Integer: true},
		"BreakerState":  {Name: "breaker_state", Kind: StateSet, Integer: true},
	}
	for _, m := range append(append([]Metric(nil), Keyspace.Metrics...), Client.Metrics...) {
		w, ok := want[m.Field]
		if !ok {
			continue
		}
		delete(want, m.Field)
		if m.Name != w.Name || m.Kind != w.Kind || m.Seconds != w.Seconds || m.Integer != w.Integer {
			t.Errorf("%s: %+v, want %+v", m.Field, m, w)
		}
	}
	if len(want) > 0 {
		t.Errorf("no metric for %v", want)
	}
	if h := Keyspace.Metrics[0].Help; h != "tiered.Stats.LocalHits: Gets answered by the local tier" {
		t.Errorf("help of LocalHits: %q", h)
	}
}

func TestEach(t *testing.T) {
	got := map[string]float64{}
	Client.Each(tiered.ClientStats{InvalidationsSent: 7, Degraded: 1500 * time.Millisecond, BreakerState: "open", ReplayPending: 3},
		func(i int, v float64, state string) { got[Client.Metrics[i].Name+"/"+state] = v })
	for k, want := range map[string]float64{
		"invalidations_sent/": 7, "degraded/": 1.5, "replay_pending/": 3, "since_healthy/": 0,
		"breaker_state/open": 1, "breaker_state/closed": 0, "breaker_state/half-open": 0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (reported: %v), want %v", k, v, ok, want)
		}
	}
	// A state no one listed is reported rather than lost.
	got = map[string]float64{}
	Client.Each(tiered.ClientStats{BreakerState: "State(7)"}, func(i int, v float64, state string) {
		if state != "" {
			got[state] = v
		}
	})
	if len(got) != 4 || got["State(7)"] != 1 || got["closed"] != 0 {
		t.Errorf("unknown state: %v", got)
	}
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"LocalHits": "local_hits", "Corrupt": "corrupt", "HTTPServer": "http_server", "IDsSeen": "ids_seen",
		"IDs": "ids", "P99Latency": "p99_latency", "LoaderDirect": "loader_direct", "A": "a",
	} {
		if got := SnakeCase(in); got != want {
			t.Errorf("SnakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLatencyBuckets(t *testing.T) {
	b := LatencyBuckets()
	if len(b) != 28 || b[0] != 10e-9 || b[len(b)-1] != 10 {
		t.Fatalf("buckets %v", b)
	}
	for i, v := range b {
		if s := strconv.FormatFloat(v, 'g', -1, 64); strings.Contains(s, "0000") || strings.Contains(s, "9999") {
			t.Errorf("bucket %d prints as %s", i, s)
		}
		if i > 0 && v <= b[i-1] {
			t.Errorf("bucket %d (%v) not above %v", i, v, b[i-1])
		}
	}
}

func TestTiers(t *testing.T) {
	names := []string{}
	for i := 0; i < Tiers; i++ {
		names = append(names, TierName(i))
	}
	if !reflect.DeepEqual(names, []string{"none", "local", "redis", "loader", "stale"}) {
		t.Fatalf("tiers %v", names)
	}
	if TierIndex(tiered.TierRedis) != 2 || TierIndex(tiered.Tier(200)) != 0 {
		t.Fatal("TierIndex")
	}
}

func TestCheckBuckets(t *testing.T) {
	if err := CheckBuckets(LatencyBuckets()); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]float64{nil, {1, 1}, {2, 1}, {math.NaN()}, {1, math.NaN()}} {
		if CheckBuckets(b) == nil {
			t.Errorf("CheckBuckets(%v): no error", b)
		}
	}
}
