package metricspec

// The latency histograms of Gets: their buckets and tier labels.

import (
	"fmt"
	"math"

	"github.com/tiercache/tiercache/tiered"
)

// LatencyBuckets returns the default upper bounds, in seconds, of the
// latency histograms: 1, 2.5 and 5 of every decade from 10ns to 10s (28
// buckets), fine enough for a local hit of tens of nanoseconds and for a
// load of seconds.
func LatencyBuckets() []float64 {
	b := make([]float64, 0, 28)
	// In whole nanoseconds, divided once: each bound is the float64
	// nearest its decimal (2.5e-08, not 2.5000000000000004e-08).
	for ns := int64(10); ns < 10e9; ns *= 10 {
		b = append(b, float64(ns)/1e9, float64(ns*5/2)/1e9, float64(ns*5)/1e9)
	}
	return append(b, 10)
}

// Tiers is the number of tier labels: the tiers and "none" (a call that
// failed before any tier answered).
const Tiers = int(tiered.TierStale) + 1

// TierIndex returns t's index among the Tiers labels, 0 ("none") for a tier
// this package does not know.
func TierIndex(t tiered.Tier) int {
	if int(t) >= Tiers {
		return 0
	}
	return int(t)
}

// TierName returns the label of the tier at index i: "none", "local",
// "redis", "loader" or "stale".
func TierName(i int) string { return tiered.Tier(i).String() }

// CheckBuckets returns an error unless b is a non-empty list of increasing
// upper bounds.
func CheckBuckets(b []float64) error {
	for i, v := range b {
		if math.IsNaN(v) || i > 0 && v <= b[i-1] {
			return fmt.Errorf("buckets must be given in increasing order, got %v", b)
		}
	}
	if len(b) == 0 {
		return fmt.Errorf("no buckets")
	}
	return nil
}
