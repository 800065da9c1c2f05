package tiered

import (
	"context"
	"encoding/json"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/remote"
)

type benchUser struct {
	ID    int64
	Name  string
	Email string
	Tags  []string
	Score float64
}

// BenchmarkLocalHit is the hit path alone (the bench/ module compares it
// with peers): one hot key, with and without LocalMaxBytes and an Observer,
// same run. go test -run '^$' -bench LocalHit -benchmem -count 8 ./tiered
func BenchmarkLocalHit(b *testing.B) {
	srv := redistest.Start(b)
	for _, tc := range []struct {
		name     string
		maxBytes int64
		observer Observer
	}{{"plain", 0, nil}, {"LocalMaxBytes", 64 << 20, nil}, {"Observer", 0, nopObserver{}}} {
		c := newClient(b, srv, func(o *Options) { o.Observer = tc.observer })
		waitReady(b, c)
		k, err := NewKeyspace(c, Config[benchUser]{Name: "bu", LocalTTL: time.Hour, LocalMaxBytes: tc.maxBytes})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		if err := k.Set(ctx, "42", benchUser{ID: 42, Name: "ada", Email: "a@b.c", Tags: []string{"x"}}); err != nil {
			b.Fatal(err)
		}
		if _, err := k.Get(ctx, "42"); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := k.Get(ctx, "42"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRedisHit is a Get that misses locally and hits Redis, beside a
// raw go-redis GET of the same bytes.
func BenchmarkRedisHit(b *testing.B) {
	be := singleBackend(b)
	rdb := be.newRedis(true) // timeouts enforced by go-redis, no goroutine per call
	c := be.clientOf(b, rdb, nil)
	waitReady(b, c)
	k, err := NewKeyspace(c, Config[benchUser]{Name: "bu", LocalCapacity: 1, LocalShards: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"1", "2"} {
		if err := k.Set(ctx, id, benchUser{ID: 42, Name: "ada", Email: "a@b.c", Tags: []string{"x"}}); err != nil {
			b.Fatal(err)
		}
	}
	ids := []string{"1", "2"}
	rkeys := []string{keyOf(b, k, "1"), keyOf(b, k, "2")}
	b.Run("tiercache", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := k.Get(ctx, ids[i&1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-redis-GET", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := rdb.Get(ctx, rkeys[i&1]).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPropagation measures, per write, the time from Set returning in
// Client A to the old value being gone from Client B's local tier
// (loopback, separate connections). It reports p50, p99 and max.
func BenchmarkPropagation(b *testing.B) {
	srv := redistest.Start(b)
	// B's bus signals each message it is about to apply; the benchmark
	// waits on that channel rather than spinning, which on a 2-core machine
	// would take the CPU from redis-server and the bus and measure that.
	arrived := make(chan struct{}, 1)
	a := newClient(b, srv)
	c := newClientHooks(b, srv, &testHooks{onMessage: func(*invalidation.Message) {
		select {
		case arrived <- struct{}{}:
		default:
		}
	}})
	waitReady(b, a, c)
	ka, err := NewKeyspace(a, Config[benchUser]{Name: "prop", LocalTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	kb, _ := NewKeyspace(c, Config[benchUser]{Name: "prop", LocalTTL: time.Hour})
	ctx := context.Background()
	h := kb.hash("k")
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := ka.Set(ctx, "k", benchUser{ID: int64(i)}); err != nil {
			b.Fatal(err)
		}
		<-arrived
		// B caches the current value, then A overwrites it.
		for kb.local.Ref(h, "k", int64(c.clock.Now())) == nil {
			if _, err := kb.Get(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
		evicted := kb.counters.peerInvalidations.Load()
		b.StartTimer()
		if err := ka.Set(ctx, "k", benchUser{ID: int64(i) + 1}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			b.Fatal("B never received the invalidation")
		}
		for kb.counters.peerInvalidations.Load() == evicted { // the eviction follows the hook at once
			runtime.Gosched()
		}
		lat = append(lat, time.Since(start))
		if kb.local.Ref(h, "k", int64(c.clock.Now())) != nil {
			b.Fatal("B still holds the old value after applying the invalidation")
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(lat[len(lat)/2]), "p50-µs")
	b.ReportMetric(us(lat[len(lat)*99/100]), "p99-µs")
	b.ReportMetric(us(lat[len(lat)-1]), "max-µs")
}

// BenchmarkInvalidationThroughput measures how many invalidated keys per
// second one receiving Client applies while two peers delete batches of
// 100 ids flat out; it fails if the receiver fell behind silently (it must
// either keep up or be disconnected and resubscribe, which flushes).
func BenchmarkInvalidationThroughput(b *testing.B) {
	srv := redistest.Start(b)
	w1, w2, r := newClient(b, srv), newClient(b, srv), newClient(b, srv)
	waitReady(b, w1, w2, r)
	cfg := Config[benchUser]{Name: "tp"}
	k1, _ := NewKeyspace(w1, cfg)
	k2, _ := NewKeyspace(w2, cfg)
	kr, _ := NewKeyspace(r, cfg)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = "id-" + strconv.Itoa(i)
	}
	ctx := context.Background()
	before := kr.Stats().PeerInvalidations
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, k := range []*Keyspace[benchUser]{k1, k2} {
		k := k
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < b.N; i++ {
				if err := k.Delete(ctx, ids...); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := uint64(2 * b.N * len(ids))
	deadline := time.Now().Add(30 * time.Second)
	for kr.Stats().PeerInvalidations-before < want && r.Stats().Resubscriptions == 0 {
		if time.Now().After(deadline) {
			b.Fatalf("receiver applied %d of %d keys and was not disconnected: it fell behind silently", kr.Stats().PeerInvalidations-before, want)
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(kr.Stats().PeerInvalidations-before)/elapsed.Seconds(), "keys/s")
	b.ReportMetric(float64(r.Stats().Resubscriptions), "resubscriptions")
}

// BenchmarkHerd: 1,000 concurrent cold Gets of one key across 4 Clients,
// loader 50ms, with leases (the default) and without. Reports loader calls
// per herd and the p99 latency of a Get.
func BenchmarkHerd(b *testing.B) {
	for _, leases := range []bool{true, false} {
		name := "leases"
		if !leases {
			name = "no-leases"
		}
		b.Run(name, func(b *testing.B) {
			srv := redistest.Start(b)
			var loads atomic.Int64
			loader := func(ctx context.Context, id string) (benchUser, error) {
				loads.Add(1)
				time.Sleep(50 * time.Millisecond) // the query's cost
				return benchUser{Name: id}, nil
			}
			var ks []*Keyspace[benchUser]
			for i := 0; i < 4; i++ {
				c := newClient(b, srv)
				waitReady(b, c)
				k, _ := NewKeyspace(c, Config[benchUser]{Name: "herd", Loader: loader, DisableLeases: !leases})
				ks = append(ks, k)
			}
			var lat []time.Duration
			var mu sync.Mutex
			loads.Store(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := "hot-" + strconv.Itoa(i)
				start := make(chan struct{})
				var wg sync.WaitGroup
				for g := 0; g < 1000; g++ {
					k := ks[g%4]
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						t0 := time.Now()
						if _, err := k.Get(context.Background(), id); err != nil {
							b.Error(err)
						}
						d := time.Since(t0)
						mu.Lock()
						lat = append(lat, d)
						mu.Unlock()
					}()
				}
				close(start)
				wg.Wait()
			}
			b.StopTimer()
			b.ReportMetric(float64(loads.Load())/float64(b.N), "loads/herd")
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkHotKeyExpiry: one hot key with a 1s TTL read by 8 goroutines for
// the benchmark's duration, early refresh on (XFetch) and off. Reports
// loader calls per second and the p99 latency of a Get: without early
// refresh every expiry stalls the readers behind a load.
func BenchmarkHotKeyExpiry(b *testing.B) {
	for _, beta := range []float64{1, NoEarlyRefresh} {
		name := "early-refresh"
		if beta < 0 {
			name = "no-early-refresh"
		}
		b.Run(name, func(b *testing.B) {
			srv := redistest.Start(b)
			c := newClient(b, srv)
			waitReady(b, c)
			var loads atomic.Int64
			k, _ := NewKeyspace(c, Config[benchUser]{
				Name: "hot", TTL: time.Second, TTLJitter: -1, EarlyRefreshBeta: beta,
				Loader: func(ctx context.Context, id string) (benchUser, error) {
					loads.Add(1)
					time.Sleep(20 * time.Millisecond)
					return benchUser{Name: id}, nil
				},
			})
			if _, err := k.Get(context.Background(), "k"); err != nil { // the cold load is not the subject
				b.Fatal(err)
			}
			loads.Store(0)
			var lat []time.Duration
			var mu sync.Mutex
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			per := b.N/8 + 1
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					local := make([]time.Duration, 0, per)
					for i := 0; i < per; i++ {
						t0 := time.Now()
						if _, err := k.Get(context.Background(), "k"); err != nil {
							b.Error(err)
						}
						local = append(local, time.Since(t0))
						time.Sleep(100 * time.Microsecond) // a request's other work
					}
					mu.Lock()
					lat = append(lat, local...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			b.StopTimer()
			secs := time.Since(start).Seconds()
			stalls := 0
			for _, d := range lat {
				if d >= 10*time.Millisecond {
					stalls++
				}
			}
			b.ReportMetric(float64(loads.Load())/secs, "loads/s")
			b.ReportMetric(float64(stalls)/secs, "stalled-Gets/s")
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkRedisDown: Get with a Loader while Redis does not answer (a
// long CLIENT PAUSE: connections stay open, commands stall), before the
// breaker opens (each call waits ReadTimeout, 50ms here) and after; beside
// calling the loader directly. Run it with a small -benchtime (100x): the
// closed case waits for every call.
func BenchmarkRedisDown(b *testing.B) {
	loader := func(ctx context.Context, id string) (benchUser, error) {
		time.Sleep(200 * time.Microsecond) // a fast primary-key query
		return benchUser{Name: id}, nil
	}
	b.Run("loader-direct", func(b *testing.B) {
		var lat []time.Duration
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			_, _ = loader(context.Background(), "k")
			lat = append(lat, time.Since(t0))
		}
		reportPercentiles(b, lat)
	})
	for _, open := range []bool{false, true} {
		name := "breaker-closed"
		failures := 1 << 30
		if open {
			name, failures = "breaker-open", 1
		}
		b.Run(name, func(b *testing.B) {
			srv := redistest.Start(b)
			c := newClient(b, srv, func(o *Options) {
				o.BreakerFailures, o.BreakerOpenFor, o.ReadTimeout = failures, time.Hour, 50*time.Millisecond
			})
			waitReady(b, c)
			k, _ := NewKeyspace(c, Config[benchUser]{Name: "down", Loader: loader, DegradedLocalTTL: -1})
			srv.Pause(b, time.Minute)
			_, _ = k.Get(context.Background(), "warm") // opens the breaker in the "open" case
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if _, err := k.Get(context.Background(), "k"); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkGetMany100 is GetMany of 100 ids that all miss locally and hit
// Redis, beside a raw pipeline of 100 GETs plus the same JSON decode.
func BenchmarkGetMany100(b *testing.B) {
	be := singleBackend(b)
	rdb := be.newRedis(true)
	c := be.clientOf(b, rdb, nil)
	waitReady(b, c)
	k, _ := NewKeyspace(c, Config[benchUser]{Name: "gm", LocalCapacity: 1, LocalShards: 1})
	ctx := context.Background()
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
		if err := k.Set(ctx, ids[i], benchUser{ID: int64(i), Name: "ada", Email: "a@b.c", Tags: []string{"x"}}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("tiercache", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if m, err := k.GetMany(ctx, ids); err != nil || len(m) != 100 {
				b.Fatal(len(m), err)
			}
		}
	})
	rkeys := make([]string, len(ids))
	for i, id := range ids {
		rkeys[i] = keyOf(b, k, id)
	}
	b.Run("pipeline+json", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			cmds := make([]*redis.StringCmd, len(ids))
			_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for j := range ids {
					cmds[j] = p.Get(ctx, rkeys[j])
				}
				return nil
			})
			out := make(map[string]benchUser, len(ids))
			for j, cmd := range cmds {
				bs, err := cmd.Bytes()
				if err != nil {
					b.Fatal(err)
				}
				env, err := remote.DecodeEnvelope(bs)
				if err != nil {
					b.Fatal(err)
				}
				var u benchUser
				if err := json.Unmarshal(env.Payload, &u); err != nil {
					b.Fatal(err)
				}
				out[ids[j]] = u
			}
		}
	})
}
