package tieredprom

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// scraper serves a registry's /metrics over HTTP and parses what it
// serves, as Prometheus would.
type scraper struct {
	t   *testing.T
	srv *httptest.Server
	reg *prometheus.Registry
}

func newScraper(t *testing.T, cs ...prometheus.Collector) *scraper {
	// A pedantic registry checks each metric against its description.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	t.Cleanup(srv.Close)
	return &scraper{t: t, srv: srv, reg: reg}
}

// scrape returns the metric families of one scrape in the text format.
func (s *scraper) scrape() map[string]*dto.MetricFamily {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.srv.URL, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || expfmt.ResponseFormat(resp.Header).FormatType() != expfmt.TypeTextPlain {
		s.t.Fatalf("scrape: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return fams
}

// series returns the metric of family name whose labels are labels.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if reflect.DeepEqual(got, labels) || len(got) == 0 && len(labels) == 0 {
			return m
		}
	}
	t.Fatalf("no series %s%v among %d", name, labels, len(f.GetMetric()))
	return nil
}

func value(m *dto.Metric) float64 {
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}

// promName is the name each field must have, spelled out in full: the
// collector derives it, this checks it.
func promName(m metricspec.Metric) (string, dto.MetricType) {
	name := "tiercache_" + m.Name
	if m.Seconds {
		name += "_seconds"
	}
	if m.Kind == metricspec.Counter {
		return name + "_total", dto.MetricType_COUNTER
	}
	return name, dto.MetricType_GAUGE
}

func TestCollectorExportsEveryField(t *testing.T) {
	obs, err := NewObserver()
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, obs)
	k := newKeyspace(t, c, "user", 0)
	ctx := ctxT(t)
	for _, id := range []string{"1", "1", "1", "1", "2", "absent", "absent"} {
		if _, err := k.Get(ctx, id); err != nil && !errors.Is(err, tiered.ErrNotFound) {
			t.Fatal(err)
		}
	}
	if err := k.Set(ctx, "3", user{ID: "3"}); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	s := newScraper(t, obs, NewCollector(c))
	fams := s.scrape()
	stats, cstats := k.Stats(), c.Stats()

	// The values a reader of the dashboard would check, written out.
	for name, want := range map[string]float64{
		"tiercache_local_hits_total":    4, // 3 hits and the negative one
		"tiercache_negative_hits_total": 1,
		"tiercache_loads_total":         3,
		"tiercache_local_entries":       4,
		"tiercache_sets_total":          1,
	} {
		if got := value(series(t, fams, name, map[string]string{"keyspace": "user"})); got != want {
			t.Errorf("%s{keyspace=\"user\"} = %v, want %v", name, got, want)
		}
	}
	// Every field of Stats, by the rule.
	for _, m := range metricspec.Keyspace.Metrics {
		name, typ := promName(m)
		if fams[name].GetType() != typ || fams[name].GetHelp() != m.Help {
			t.Errorf("Stats.%s: family %s is %v %q, want %v %q", m.Field, name, fams[name].GetType(), fams[name].GetHelp(), typ, m.Help)
			continue
		}
		if got, want := value(series(t, fams, name, map[string]string{"keyspace": "user"})), fieldValue(stats, m.Field); got != want {
			t.Errorf("%s = %v, Stats.%s = %v", name, got, m.Field, want)
		}
	}
	// Every field of ClientStats; the breaker's state as one series per state.
	for _, m := range metricspec.Client.Metrics {
		name, typ := promName(m)
		if fams[name].GetType() != typ || fams[name].GetHelp() != m.Help {
			t.Errorf("ClientStats.%s: family %s is %v %q, want %v %q", m.Field, name, fams[name].GetType(), fams[name].GetHelp(), typ, m.Help)
			continue
		}
		if m.Kind == metricspec.StateSet {
			continue
		}
		got, want := value(series(t, fams, name, nil)), fieldValue(cstats, m.Field)
		if m.Field == "SinceHealthy" { // an age, read a moment apart
			if got < 0 || got > 2 {
				t.Errorf("%s = %v", name, got)
			}
		} else if got != want {
			t.Errorf("%s = %v, ClientStats.%s = %v", name, got, m.Field, want)
		}
	}
	for state, want := range map[string]float64{"closed": 1, "open": 0, "half-open": 0} {
		if got := value(series(t, fams, "tiercache_breaker_state", map[string]string{"state": state})); got != want {
			t.Errorf("tiercache_breaker_state{state=%q} = %v, want %v", state, got, want)
		}
	}
	if got := value(series(t, fams, "tiercache_invalidations_sent_total", nil)); got < 1 {
		t.Errorf("invalidations sent %v, want at least the Set's", got)
	}

	// A keyspace created after the collector is in the next scrape.
	orders := newKeyspace(t, c, "order", 0)
	if _, err := orders.Get(ctx, "7"); err != nil {
		t.Fatal(err)
	}
	fams = s.scrape()
	if got := value(series(t, fams, "tiercache_loads_total", map[string]string{"keyspace": "order"})); got != 1 {
		t.Errorf("loads of a keyspace created later: %v, want 1", got)
	}
	if n := len(fams["tiercache_local_hits_total"].GetMetric()); n != 2 {
		t.Errorf("%d keyspaces in tiercache_local_hits_total, want 2", n)
	}

	problems, err := testutil.GatherAndLint(s.reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// Two Clients in one registry need a label each: without, the second
// registration fails rather than mixing two Clients' counters.
func TestCollectorsOfTwoClients(t *testing.T) {
	a, b := newClient(t, nil), newClient(t, nil)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(a)); err != nil {
		t.Fatal(err)
	}
	var already prometheus.AlreadyRegisteredError
	if err := reg.Register(NewCollector(b)); !errors.As(err, &already) {
		t.Fatalf("a second Client without a label: %v", err)
	}
	reg = prometheus.NewPedanticRegistry()
	for name, c := range map[string]*tiered.Client{"a": a, "b": b} {
		if err := prometheus.WrapRegistererWith(prometheus.Labels{"client": name}, reg).Register(NewCollector(c)); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := testutil.GatherAndCount(reg, "tiercache_breaker_opens_total"); err != nil || n != 2 {
		t.Fatalf("%d series of tiercache_breaker_opens_total, %v; want 2", n, err)
	}
}
