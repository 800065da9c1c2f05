// Package tieredotel exports a tiered.Client's metrics and traces to
// OpenTelemetry: every field of tiered.Stats (per keyspace) and
// tiered.ClientStats as an asynchronous instrument, a histogram of Get
// latencies per keyspace and tier, and a span for every Get or GetMany that
// goes past the local tier (never for local hits).
//
// It is a Go module of its own, so that users of tiercache who do not use
// OpenTelemetry never see its dependencies.
//
// Two parts, because the Client takes its Observer when it is made and the
// instruments read the Client:
//
//	obs, _ := tieredotel.NewObserver()       // spans and latency histograms
//	c, _ := tiered.NewClient(tiered.Options{Redis: rdb, Observer: obs})
//	err := tieredotel.Instrument(c)          // the Stats, read at each collection
//
// Both use the global MeterProvider and TracerProvider unless
// WithMeterProvider or WithTracerProvider say otherwise. To feed Prometheus
// as well, combine the observers: tiered.Observers(otelObs, promObs).
//
// # Metrics
//
// Instrument registers, on the Meter of this package's import path, one
// instrument per field, named tiercache. and the field in snake case, found
// by reflection so that fields added to the structs appear without a change
// here:
//
//   - uint64 fields: Int64ObservableCounter (tiercache.local_hits).
//   - int fields, counts of things now: Int64ObservableUpDownCounter
//     (tiercache.local_entries, tiercache.replay_pending).
//   - time.Duration fields, unit "s": Degraded, a total, a
//     Float64ObservableCounter (tiercache.degraded); SinceHealthy, an age, a
//     Float64ObservableGauge (tiercache.since_healthy).
//   - BreakerState: an Int64ObservableGauge with the attribute state, 1 for
//     the current state and 0 for the others (tiercache.breaker_state).
//
// Keyspace instruments carry the attribute keyspace and cover every keyspace
// of the Client at each collection, those created after Instrument included.
// The description of each is the field's comment.
//
// tiercache.get.duration (unit "s") is the histogram of Get and GetMany
// latencies with the attributes keyspace and tier ("local", "redis",
// "loader", "stale", or "none" for a call that failed before any tier
// answered). Its explicit bucket boundaries (1, 2.5 and 5 of every decade
// from 10ns to 10s, or those of WithBuckets) are given as the instrument's
// advice, which a View may override. Misses are all recorded; local hits are
// sampled, one in tiered.LocalHitSampling (64): read rates of hits from
// tiercache.local_hits and the latency distribution from the histogram.
//
// # Traces
//
// Every call past the local tier is a span named tiercache.get, a child of
// the caller's span; the Redis calls and the Loader run under it (the
// Loader's context carries it). Attributes: keyspace; when it ends, tier
// (the farthest that answered), lease (none, won, waited, timeout),
// load_seconds (how long the Loader ran, 0 if it did not), ids (1 for Get,
// the ids past the local tier for GetMany) and, for tiered.ErrNotFound,
// not_found=true. Any other error is recorded on the span, whose status is
// then Error.
//
// WithAttributes adds attributes to every metric and span: a label per
// Client when a process has several on one MeterProvider.
package tieredotel
