// Package metricspec is what the metrics adapters (tiered/tieredprom and
// tiered/tieredotel) export, written once: a description of every field of
// tiered.Stats and tiered.ClientStats as a metric, found by reflection so
// that a field added to either struct becomes a metric without a change to
// the adapters, and the latency buckets and tier labels of the Get
// histograms.
//
// The rules, by the field's type:
//
//   - uint64: a Counter (every one of them only grows).
//   - int, int64 and the other signed integers, float64: a Gauge (a reading
//     now: LocalEntries, ReplayPending).
//   - time.Duration: in seconds; a Gauge when the name begins with "Since"
//     (an age: SinceHealthy), otherwise a Counter (a total time: Degraded).
//   - bool: a Gauge of 0 or 1.
//   - string: a StateSet, one series per state with the value 1 for the
//     current state and 0 for the others (BreakerState: closed, open,
//     half-open); a state not known here is reported too, with 1.
//
// A field of any other type has no metric; the package's tests fail then.
// Names are the field names in snake case (LocalHits: local_hits); each
// adapter adds its own prefix and suffixes. Help texts are the fields'
// comments in tiered/stats.go, copied into help_gen.go by
// `go generate ./internal/metricspec`; a field the copy does not know yet
// gets a help text that names it.
package metricspec

//go:generate go run ./gendoc -o help_gen.go ../../tiered/stats.go
