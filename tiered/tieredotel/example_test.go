package tieredotel_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/tieredotel"
)

// The Observer goes into the Client's Options (spans and latency
// histograms); Instrument, given the Client, registers its Stats. Here the
// providers are SDK ones read by hand; a service passes its own, or sets the
// global ones and no option. The example reads REDIS_ADDR, falling back to
// localhost:6379.
func ExampleInstrument() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()

	reader := sdkmetric.NewManualReader()
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer meters.Shutdown(context.Background())
	spans := tracetest.NewInMemoryExporter()
	tracers := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tracers.Shutdown(context.Background())

	obs, err := tieredotel.NewObserver(tieredotel.WithMeterProvider(meters), tieredotel.WithTracerProvider(tracers))
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := tiered.NewClient(tiered.Options{Redis: rdb, Observer: obs})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := tieredotel.Instrument(c, tieredotel.WithMeterProvider(meters)); err != nil {
		fmt.Println(err)
		return
	}

	type User struct{ ID, Name string }
	users, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name: "otel-example-user", TTL: time.Hour,
		Loader: func(ctx context.Context, id string) (User, error) {
			return User{ID: id, Name: "Ada"}, nil
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := users.Delete(ctx, "42"); err != nil { // a clean start in Redis
		fmt.Println(err)
		return
	}
	for i := 0; i < 3; i++ {
		if _, err := users.Get(ctx, "42"); err != nil {
			fmt.Println(err)
			return
		}
	}

	// The first Get's span: the miss. Local hits have none (the later
	// Gets are local hits, unless the bus subscribed between them: its
	// first subscription flushes the local tier, and a Redis hit follows).
	if got := spans.GetSpans(); len(got) > 0 {
		fmt.Println("span", got[0].Name)
		for _, kv := range got[0].Attributes {
			if kv.Key == "tier" || kv.Key == "lease" {
				fmt.Println(" ", kv.Key, kv.Value.String())
			}
		}
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "tiercache.loads" {
				for _, p := range sum.DataPoints {
					ks, _ := p.Attributes.Value("keyspace")
					fmt.Println(m.Name, ks.String(), p.Value)
				}
			}
		}
	}
	// Output:
	// span tiercache.get
	//   tier loader
	//   lease won
	// tiercache.loads otel-example-user 1
}
