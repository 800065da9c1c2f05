package bench

// Scenario 1 again with an Observer attached: the rows tiercache-prom and
// tiercache-otel of BenchmarkLocalHit.

import (
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/tieredotel"
	"github.com/tiercache/tiercache/tiered/tieredprom"
)

// observedFixture is tiercache's keyspace of scenario 1 again, on a Client
// with an Observer: the Prometheus adapter's, or OpenTelemetry's recording
// into an SDK MeterProvider (whose reader never collects: a service's
// export runs elsewhere, off the hit path).
type observedFixture struct {
	c  *tiered.Client
	ks *tiered.Keyspace[User]
}

var promFx, otelFx lazy[*observedFixture]

func observedFixtureGet(b *testing.B, which string) *observedFixture {
	ids := hitFixtureGet(b).ids
	fx, newObserver := &promFx, func() (tiered.Observer, error) { return tieredprom.NewObserver() }
	if which == "otel" {
		fx, newObserver = &otelFx, func() (tiered.Observer, error) {
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			onClose(func() { _ = mp.Shutdown(ctx) })
			return tieredotel.NewObserver(tieredotel.WithMeterProvider(mp))
		}
	}
	return fx.get(b, func() (*observedFixture, error) {
		obs, err := newObserver()
		if err != nil {
			return nil, err
		}
		f := &observedFixture{}
		f.c, f.ks, err = newHitKeyspace(ids, obs)
		return f, err
	})
}
