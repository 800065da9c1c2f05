package tieredotel

// Instrument: the Stats and ClientStats fields as asynchronous instruments,
// read at each collection.

import (
	"context"
	"fmt"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tiercache/tiercache/internal/metricspec"
	"github.com/tiercache/tiercache/tiered"
)

// Instrument registers asynchronous instruments for c's metrics on the
// MeterProvider: every field of Stats for each keyspace of c (those created
// later included), with the attribute keyspace, and every field of
// ClientStats. Call it once per Client; the instruments live as long as the
// MeterProvider (shut it down to stop them). The latency histograms and the
// spans come from the Observer (see NewObserver).
func Instrument(c *tiered.Client, opts ...Option) error {
	cfg := newConfig(opts)
	meter := cfg.meters.Meter(scope)
	keyspace, err := instruments(meter, metricspec.Keyspace.Metrics)
	if err != nil {
		return err
	}
	shared, err := instruments(meter, metricspec.Client.Metrics)
	if err != nil {
		return err
	}
	all := make([]metric.Observable, 0, len(keyspace)+len(shared))
	for _, in := range slices.Concat(keyspace, shared) {
		all = append(all, in.observable())
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		metricspec.Client.Each(c.Stats(), func(i int, v float64, state string) {
			shared[i].observe(o, v, cfg.with(stateAttribute(state)...))
		})
		for name, s := range c.KeyspaceStats() {
			metricspec.Keyspace.Each(s, func(i int, v float64, state string) {
				keyspace[i].observe(o, v, cfg.with(append(stateAttribute(state), attribute.String("keyspace", name))...))
			})
		}
		return nil
	}, all...)
	if err != nil {
		return fmt.Errorf("tieredotel: register the Stats callback: %w", err)
	}
	return nil
}

func stateAttribute(state string) []attribute.KeyValue {
	if state == "" {
		return nil
	}
	return []attribute.KeyValue{attribute.String("state", state)}
}

// instrument is the OpenTelemetry side of one metricspec.Metric: one of
// integer and float is set.
type instrument struct {
	integer metric.Int64Observable
	float   metric.Float64Observable
}

func (in instrument) observable() metric.Observable {
	if in.integer != nil {
		return in.integer
	}
	return in.float
}

func (in instrument) observe(o metric.Observer, v float64, attrs []attribute.KeyValue) {
	opt := metric.WithAttributes(attrs...)
	if in.integer != nil {
		o.ObserveInt64(in.integer, int64(v), opt)
		return
	}
	o.ObserveFloat64(in.float, v, opt)
}

// instruments creates the instrument of each metric, by the rule in the
// package documentation.
func instruments(meter metric.Meter, ms []metricspec.Metric) ([]instrument, error) {
	out := make([]instrument, len(ms))
	for i, m := range ms {
		name := "tiercache." + m.Name
		unit := ""
		if m.Seconds {
			unit = "s"
		}
		desc, u := metric.WithDescription(m.Help), metric.WithUnit(unit)
		var err error
		switch {
		case m.Kind == metricspec.Counter && m.Integer:
			out[i].integer, err = meter.Int64ObservableCounter(name, desc, u)
		case m.Kind == metricspec.Counter:
			out[i].float, err = meter.Float64ObservableCounter(name, desc, u)
		case m.Kind == metricspec.Gauge && m.Integer:
			out[i].integer, err = meter.Int64ObservableUpDownCounter(name, desc, u)
		case m.Kind == metricspec.Gauge:
			out[i].float, err = meter.Float64ObservableGauge(name, desc, u)
		default: // a StateSet
			out[i].integer, err = meter.Int64ObservableGauge(name, desc, u)
		}
		if err != nil {
			return nil, fmt.Errorf("tieredotel: instrument %s: %w", name, err)
		}
	}
	return out, nil
}
