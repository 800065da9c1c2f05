package tieredprom_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tiered"
	"github.com/tiercache/tiercache/tiered/tieredprom"
)

// The Observer goes into the Client's Options (it records the latency
// histograms); the collector, made from the Client, reads every keyspace's
// Stats and the Client's at each scrape. A service serves them with
// http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{})).
// The example reads REDIS_ADDR, falling back to localhost:6379.
func ExampleNewCollector() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()

	obs, err := tieredprom.NewObserver()
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(obs, tieredprom.NewCollector(c))

	type User struct{ ID, Name string }
	users, err := tiered.NewKeyspace(c, tiered.Config[User]{
		Name: "prom-example-user", TTL: time.Hour,
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

	// What /metrics would serve, in the text format, a few lines of it
	// (tiercache_local_hits_total is there too: 2, or 1 if the bus
	// subscribed between the Gets, which flushes the local tier once).
	fams, err := reg.Gather()
	if err != nil {
		fmt.Println(err)
		return
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			fmt.Println(err)
			return
		}
	}
	lines := bufio.NewScanner(&text)
	for lines.Scan() {
		line := lines.Text()
		for _, prefix := range []string{
			"tiercache_loads_total", "tiercache_breaker_state",
			`tiercache_get_duration_seconds_count{keyspace="prom-example-user",tier="loader"}`,
		} {
			if strings.HasPrefix(line, prefix) {
				fmt.Println(line)
			}
		}
	}
	// Output:
	// tiercache_breaker_state{state="closed"} 1
	// tiercache_breaker_state{state="half-open"} 0
	// tiercache_breaker_state{state="open"} 0
	// tiercache_get_duration_seconds_count{keyspace="prom-example-user",tier="loader"} 1
	// tiercache_loads_total{keyspace="prom-example-user"} 1
}

// One Observer for Prometheus and another (OpenTelemetry's, say): the
// Client takes one, made of both.
func ExampleNewObserver_combined() {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "localhost:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	defer rdb.Close()

	prom, err := tieredprom.NewObserver(tieredprom.WithBuckets(0.0001, 0.001, 0.01, 0.1, 1))
	if err != nil {
		fmt.Println(err)
		return
	}
	var other tiered.Observer // tieredotel.NewObserver(...), for instance
	c, err := tiered.NewClient(tiered.Options{Redis: rdb, Observer: tiered.Observers(prom, other)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(prometheus.NewRegistry().Register(prom))
	// Output: <nil>
}
