package metricspec

// The description of Stats and ClientStats fields as metrics.

import (
	"reflect"
	"strings"
	"time"
	"unicode"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/tiered"
)

// Kind is how a field is exported.
type Kind uint8

// The kinds of metric.
const (
	Counter  Kind = iota + 1 // a value that only grows
	Gauge                    // a reading now
	StateSet                 // one series per state: 1 for the current one, 0 for the others
)

// Metric describes one field of Stats or ClientStats.
type Metric struct {
	Field   string   // the Go field: "LocalHits"
	Name    string   // the field in snake case: "local_hits"
	Kind    Kind     // how it is exported
	Seconds bool     // a time.Duration, reported in seconds
	Integer bool     // an integer count (not Seconds, not a float)
	States  []string // a StateSet's known states, always reported
	Help    string   // the field's comment in tiered/stats.go

	index int // the field's index in its struct
}

// Set describes every field of S, a Stats or a ClientStats.
type Set[S tiered.Stats | tiered.ClientStats] struct {
	Metrics     []Metric // one per field with a supported type, in field order
	Unsupported []string // fields of a type no rule covers (a test fails on them)
}

// Keyspace describes tiered.Stats, whose metrics carry a keyspace label.
var Keyspace = describe[tiered.Stats]()

// Client describes tiered.ClientStats, the Client-wide counters.
var Client = describe[tiered.ClientStats]()

// knownStates are the states a StateSet field can take.
var knownStates = map[string][]string{
	"BreakerState": {breaker.Closed.String(), breaker.Open.String(), breaker.HalfOpen.String()},
}

var durationType = reflect.TypeOf(time.Duration(0))

func describe[S tiered.Stats | tiered.ClientStats]() *Set[S] {
	t := reflect.TypeOf(*new(S))
	set := &Set[S]{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		m := Metric{Field: f.Name, Name: SnakeCase(f.Name), index: i, Help: help(t.Name(), f.Name)}
		switch k := f.Type.Kind(); {
		case f.Type == durationType:
			m.Seconds, m.Kind = true, Counter
			if strings.HasPrefix(f.Name, "Since") {
				m.Kind = Gauge
			}
		case k == reflect.Uint64:
			m.Kind, m.Integer = Counter, true
		case k >= reflect.Int && k <= reflect.Int64, k == reflect.Bool:
			m.Kind, m.Integer = Gauge, true
		case k == reflect.Float64 || k == reflect.Float32:
			m.Kind = Gauge
		case k == reflect.String:
			m.Kind, m.Integer, m.States = StateSet, true, knownStates[f.Name]
		default:
			set.Unsupported = append(set.Unsupported, t.Name()+"."+f.Name)
			continue
		}
		set.Metrics = append(set.Metrics, m)
	}
	return set
}

// help returns the help text of a field: its name and its comment.
func help(typ, field string) string {
	name := "tiered." + typ + "." + field
	if h, ok := fieldHelp[typ+"."+field]; ok && h != "" {
		return name + ": " + h
	}
	return name
}

// Each calls f for every series of s: once per metric, with its value (in
// seconds for durations), and for a StateSet once per state, with 1 for
// the current state and 0 for the others. i indexes set.Metrics.
func (set *Set[S]) Each(s S, f func(i int, value float64, state string)) {
	v := reflect.ValueOf(s)
	for i := range set.Metrics {
		m := &set.Metrics[i]
		fv := v.Field(m.index)
		switch {
		case m.Kind == StateSet:
			current := fv.String()
			for _, st := range m.States {
				f(i, boolValue(st == current), st)
			}
			if !contains(m.States, current) {
				f(i, 1, current)
			}
		case m.Seconds:
			f(i, time.Duration(fv.Int()).Seconds(), "")
		default:
			f(i, number(fv), "")
		}
	}
}

func number(v reflect.Value) float64 {
	switch {
	case v.CanUint():
		return float64(v.Uint())
	case v.CanInt():
		return float64(v.Int())
	case v.CanFloat():
		return v.Float()
	}
	return boolValue(v.Bool())
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

// SnakeCase returns a Go field name in snake case: "LocalHits" is
// "local_hits", "HTTPServer" "http_server", "IDsSeen" "ids_seen" (a
// plural "s" stays with its acronym).
func SnakeCase(name string) string {
	r := []rune(name)
	var b strings.Builder
	for i, c := range r {
		if i > 0 && unicode.IsUpper(c) && wordStarts(r, i) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}

// wordStarts reports whether the upper-case r[i] begins a word: after a
// lower-case letter or a digit, or as the last capital of an acronym that
// a lower-case word follows (but not an acronym's plural "s").
func wordStarts(r []rune, i int) bool {
	if !unicode.IsUpper(r[i-1]) {
		return true
	}
	if i+1 == len(r) || !unicode.IsLower(r[i+1]) {
		return false
	}
	plural := r[i+1] == 's' && (i+2 == len(r) || unicode.IsUpper(r[i+2]))
	return !plural
}
