package tieredprom

// Observer: the latency histograms, fed by the Client's Observer calls.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// Observer is a tiered.Observer that records the latency of Gets in
// tiercache_get_duration_seconds, and the prometheus.Collector of that
// histogram. Put it in tiered.Options.Observer and register it.
type Observer struct {
	histogram *prometheus.HistogramVec
	keyspaces sync.Map // keyspace name -> *keyspaceHistograms
}

// keyspaceHistograms are one keyspace's histograms, by tier index, and the
// end of its misses, made once so that observing allocates nothing.
type keyspaceHistograms struct {
	tiers [metricspec.Tiers]prometheus.Observer
	end   func(tiered.MissEnd)
}

// Option configures NewObserver.
type Option func(*options)

type options struct {
	buckets []float64
}

// WithBuckets sets the upper bounds, in seconds and increasing, of the
// latency histograms' buckets. Default: 1, 2.5 and 5 of every decade from
// 10ns to 10s.
func WithBuckets(upperBounds ...float64) Option {
	return func(o *options) { o.buckets = append([]float64(nil), upperBounds...) }
}

// NewObserver returns an Observer. It fails only on invalid buckets.
func NewObserver(opts ...Option) (*Observer, error) {
	o := options{buckets: metricspec.LatencyBuckets()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := metricspec.CheckBuckets(o.buckets); err != nil {
		return nil, fmt.Errorf("tieredprom: %w", err)
	}
	return &Observer{histogram: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "tiercache_get_duration_seconds",
		Help: "Latency of Get and GetMany calls by the tier that answered (the farthest, for GetMany). " +
			`tier="local" counts one local hit in tiered.LocalHitSampling.`,
		Buckets: o.buckets,
	}, []string{"keyspace", "tier"})}, nil
}

// LocalHit records a sampled local hit. It implements tiered.Observer.
func (o *Observer) LocalHit(keyspace string, latency time.Duration) {
	o.of(keyspace).tiers[tiered.TierLocal].Observe(latency.Seconds())
}

// StartMiss returns the function that records the miss when it ends. It
// implements tiered.Observer.
func (o *Observer) StartMiss(ctx context.Context, keyspace string) (context.Context, func(tiered.MissEnd)) {
	return ctx, o.of(keyspace).end
}

// of returns the histograms of a keyspace, made on its first observation.
func (o *Observer) of(keyspace string) *keyspaceHistograms {
	if h, ok := o.keyspaces.Load(keyspace); ok {
		return h.(*keyspaceHistograms)
	}
	h := &keyspaceHistograms{}
	for i := range h.tiers {
		h.tiers[i] = o.histogram.WithLabelValues(keyspace, metricspec.TierName(i))
	}
	h.end = func(e tiered.MissEnd) { h.tiers[metricspec.TierIndex(e.Tier)].Observe(e.Latency.Seconds()) }
	actual, _ := o.keyspaces.LoadOrStore(keyspace, h)
	return actual.(*keyspaceHistograms)
}

// Describe implements prometheus.Collector.
func (o *Observer) Describe(ch chan<- *prometheus.Desc) { o.histogram.Describe(ch) }

// Collect implements prometheus.Collector.
func (o *Observer) Collect(ch chan<- prometheus.Metric) { o.histogram.Collect(ch) }
