package tieredotel

// Observer: the spans of the miss path and the latency histogram.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// Observer is a tiered.Observer that traces every call past the local tier
// (a span named tiercache.get) and records Get latencies in the histogram
// tiercache.get.duration. Put it in tiered.Options.Observer.
type Observer struct {
	tracer    trace.Tracer
	histogram metric.Float64Histogram
	config    config
	keyspaces sync.Map // keyspace name -> *keyspaceRecords
}

// keyspaceRecords are what one keyspace's observations carry, made once so
// that recording a local hit allocates nothing.
type keyspaceRecords struct {
	span  trace.SpanStartOption                   // the span's starting attributes
	tiers [metricspec.Tiers][]metric.RecordOption // the histogram's attributes, by tier index
}

// NewObserver returns an Observer. It fails on invalid buckets, or when the
// MeterProvider refuses the histogram.
func NewObserver(opts ...Option) (*Observer, error) {
	cfg := newConfig(opts)
	if err := metricspec.CheckBuckets(cfg.buckets); err != nil {
		return nil, fmt.Errorf("tieredotel: %w", err)
	}
	h, err := cfg.meters.Meter(scope).Float64Histogram("tiercache.get.duration",
		metric.WithDescription("Latency of Get and GetMany calls by the tier that answered (the farthest, for GetMany); "+
			"tier=local records one local hit in tiered.LocalHitSampling."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(cfg.buckets...))
	if err != nil {
		return nil, fmt.Errorf("tieredotel: histogram tiercache.get.duration: %w", err)
	}
	return &Observer{tracer: cfg.tracers.Tracer(scope), histogram: h, config: cfg}, nil
}

// LocalHit records a sampled local hit. It implements tiered.Observer.
func (o *Observer) LocalHit(keyspace string, latency time.Duration) {
	o.histogram.Record(context.Background(), latency.Seconds(), o.of(keyspace).tiers[tiered.TierLocal]...)
}

// StartMiss starts the span tiercache.get and returns its context and the
// function that ends it. It implements tiered.Observer.
func (o *Observer) StartMiss(ctx context.Context, keyspace string) (context.Context, func(tiered.MissEnd)) {
	k := o.of(keyspace)
	ctx, span := o.tracer.Start(ctx, "tiercache.get", k.span, trace.WithSpanKind(trace.SpanKindInternal))
	return ctx, func(e tiered.MissEnd) {
		o.histogram.Record(ctx, e.Latency.Seconds(), k.tiers[metricspec.TierIndex(e.Tier)]...)
		if span.IsRecording() {
			endSpan(span, e)
		}
		span.End()
	}
}

// endSpan records what a miss did on its span.
func endSpan(span trace.Span, e tiered.MissEnd) {
	span.SetAttributes(
		attribute.String("tier", e.Tier.String()),
		attribute.String("lease", e.Lease.String()),
		attribute.Float64("load_seconds", e.Load.Seconds()),
		attribute.Int("ids", e.IDs),
	)
	switch {
	case errors.Is(e.Err, tiered.ErrNotFound):
		span.SetAttributes(attribute.Bool("not_found", true))
	case e.Err != nil:
		span.RecordError(e.Err)
		span.SetStatus(codes.Error, e.Err.Error())
	}
}

// of returns the records of a keyspace, made on its first observation.
func (o *Observer) of(keyspace string) *keyspaceRecords {
	if k, ok := o.keyspaces.Load(keyspace); ok {
		return k.(*keyspaceRecords)
	}
	name := attribute.String("keyspace", keyspace)
	k := &keyspaceRecords{span: trace.WithAttributes(o.config.with(name)...)}
	for i := range k.tiers {
		set := attribute.NewSet(o.config.with(name, attribute.String("tier", metricspec.TierName(i)))...)
		k.tiers[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	actual, _ := o.keyspaces.LoadOrStore(keyspace, k)
	return actual.(*keyspaceRecords)
}
