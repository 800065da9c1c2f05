package tieredotel

// Options of NewObserver and Instrument.

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/internal/metricspec"
)

// scope is the instrumentation scope of the meters and the tracer.
const scope = "github.com/tiercache/tiercache/tiered/tieredotel"

// Option configures NewObserver and Instrument.
type Option func(*config)

type config struct {
	meters     metric.MeterProvider
	tracers    trace.TracerProvider
	buckets    []float64
	attributes []attribute.KeyValue
}

// WithMeterProvider sets the MeterProvider. Default: the global one
// (otel.GetMeterProvider).
func WithMeterProvider(p metric.MeterProvider) Option {
	return func(c *config) { c.meters = p }
}

// WithTracerProvider sets the TracerProvider of NewObserver's spans.
// Default: the global one (otel.GetTracerProvider).
func WithTracerProvider(p trace.TracerProvider) Option {
	return func(c *config) { c.tracers = p }
}

// WithBuckets sets the explicit bucket boundaries, in seconds and
// increasing, of NewObserver's latency histogram. Default: 1, 2.5 and 5 of
// every decade from 10ns to 10s.
func WithBuckets(upperBounds ...float64) Option {
	return func(c *config) { c.buckets = append([]float64(nil), upperBounds...) }
}

// WithAttributes adds attributes to every metric and span, such as the name
// of a Client when a process has several. Default: none.
func WithAttributes(kv ...attribute.KeyValue) Option {
	return func(c *config) { c.attributes = append(c.attributes, kv...) }
}

// newConfig applies opts over the defaults.
func newConfig(opts []Option) config {
	c := config{buckets: metricspec.LatencyBuckets()}
	for _, opt := range opts {
		opt(&c)
	}
	if c.meters == nil {
		c.meters = otel.GetMeterProvider()
	}
	if c.tracers == nil {
		c.tracers = otel.GetTracerProvider()
	}
	return c
}

// with returns the configured attributes followed by kv, in a slice of its
// own.
func (c *config) with(kv ...attribute.KeyValue) []attribute.KeyValue {
	return append(append(make([]attribute.KeyValue, 0, len(c.attributes)+len(kv)), c.attributes...), kv...)
}
