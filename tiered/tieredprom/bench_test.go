package tieredprom

import (
	"testing"
	"time"
)

// BenchmarkObserverLocalHit is what one sampled local hit costs the
// Observer (one in tiered.LocalHitSampling hits pays it).
func BenchmarkObserverLocalHit(b *testing.B) {
	obs, err := NewObserver()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			obs.LocalHit("user", 40*time.Nanosecond)
		}
	})
}
