package tieredotel

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// BenchmarkObserverLocalHit is what one sampled local hit costs the
// Observer recording into an SDK MeterProvider (one in
// tiered.LocalHitSampling hits pays it), serial and parallel.
func BenchmarkObserverLocalHit(b *testing.B) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	defer mp.Shutdown(context.Background())
	obs, err := NewObserver(WithMeterProvider(mp))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			obs.LocalHit("user", 40*time.Nanosecond)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				obs.LocalHit("user", 40*time.Nanosecond)
			}
		})
	})
}
