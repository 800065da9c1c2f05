package tieredprom

// The collector of Stats and ClientStats: one Prometheus metric per field,
// read at each scrape.

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// collector reads a Client's Stats at each scrape.
type collector struct {
	client   *tiered.Client
	keyspace []family // by index in metricspec.Keyspace.Metrics
	shared   []family // by index in metricspec.Client.Metrics
}

// family is the Prometheus side of one metricspec.Metric.
type family struct {
	desc      *prometheus.Desc
	valueType prometheus.ValueType
	stateSet  bool
}

// NewCollector returns the collector of c's metrics: every field of Stats
// for each keyspace of c (those created later included), labelled
// keyspace, and every field of ClientStats. Register it beside the
// Observer that holds the latency histograms (see NewObserver).
func NewCollector(c *tiered.Client) prometheus.Collector {
	return &collector{
		client:   c,
		keyspace: families(metricspec.Keyspace.Metrics, "keyspace"),
		shared:   families(metricspec.Client.Metrics),
	}
}

func families(ms []metricspec.Metric, labels ...string) []family {
	out := make([]family, len(ms))
	for i, m := range ms {
		f := family{valueType: prometheus.GaugeValue, stateSet: m.Kind == metricspec.StateSet}
		name := "tiercache_" + m.Name
		if m.Seconds {
			name += "_seconds"
		}
		if m.Kind == metricspec.Counter {
			name, f.valueType = name+"_total", prometheus.CounterValue
		}
		l := labels
		if f.stateSet {
			l = append(append([]string(nil), labels...), "state")
		}
		f.desc = prometheus.NewDesc(name, m.Help, l, nil)
		out[i] = f
	}
	return out
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, fs := range [][]family{c.keyspace, c.shared} {
		for _, f := range fs {
			ch <- f.desc
		}
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	metricspec.Client.Each(c.client.Stats(), func(i int, v float64, state string) {
		c.shared[i].send(ch, v, state)
	})
	for name, s := range c.client.KeyspaceStats() {
		metricspec.Keyspace.Each(s, func(i int, v float64, state string) {
			c.keyspace[i].send(ch, v, state, name)
		})
	}
}

// send sends one series of f.
func (f family) send(ch chan<- prometheus.Metric, v float64, state string, labels ...string) {
	if f.stateSet {
		labels = append(labels, state)
	}
	m, err := prometheus.NewConstMetric(f.desc, f.valueType, v, labels...)
	if err != nil { // a keyspace name that is not UTF-8: the scrape reports it
		m = prometheus.NewInvalidMetric(f.desc, err)
	}
	ch <- m
}
