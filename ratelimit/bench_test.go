package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Benchmarks, all on the package's redis-server, with go-redis clients that
// honour context deadlines (ContextTimeoutEnabled), the fast path:
//
//	go test -run '^$' -bench . -benchmem -count 5 ./ratelimit/ | tee new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest new.txt
//
// BenchmarkAllow compares one Allow per algorithm with the guide's fixed
// window done as a pipeline of INCR and PEXPIRE (one round trip, not
// atomic), over the same 1,000 keys at 100 per second each.
// BenchmarkAllowInterleaved does the same comparison with the two calls
// alternating in one loop, so that a shared machine's load falls on both
// alike; it reports the median of each (µs) and their ratio.
// BenchmarkMemoryPerKey reports what Redis holds for one key that used its
// whole limit of 100 (MEMORY USAGE, key name included).

const benchKeys = 1000

func benchClient(b *testing.B) *redis.Client {
	opts := single.RedisOptions()
	opts.ContextTimeoutEnabled = true
	rdb := redis.NewClient(opts)
	b.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// benchKeyNames returns benchKeys keys that no other run used.
func benchKeyNames(prefix string) []string {
	names := make([]string, benchKeys)
	run := time.Now().UnixNano()
	for i := range names {
		names[i] = fmt.Sprintf("%s:%d:%d", prefix, run, i)
	}
	return names
}

func BenchmarkAllow(b *testing.B) {
	ctx := context.Background()
	rdb := benchClient(b)
	b.Run("raw-INCR+PEXPIRE", func(b *testing.B) {
		names := benchKeyNames("rawbench")
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			key := names[i%benchKeys]
			var incr *redis.IntCmd
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				incr = p.Incr(ctx, key)
				p.PExpire(ctx, key, time.Second)
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			_ = incr.Val() <= 100
		}
	})
	for _, a := range allAlgorithms {
		b.Run(a.String(), func(b *testing.B) {
			lim := New(rdb, Options{Prefix: "rlbench"})
			limit := Limit{Rate: 100, Period: time.Second, Algorithm: a}
			names := benchKeyNames("user")
			degraded := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				res, err := lim.Allow(ctx, names[i%benchKeys], limit)
				if err != nil {
					b.Fatal(err)
				}
				if res.Degraded {
					degraded++
				}
			}
			b.ReportMetric(float64(degraded)/float64(b.N), "degraded/op")
		})
	}
}

func BenchmarkAllowInterleaved(b *testing.B) {
	ctx := context.Background()
	rdb := benchClient(b)
	for _, a := range allAlgorithms {
		b.Run(a.String(), func(b *testing.B) {
			lim := New(rdb, Options{Prefix: "rlbench"})
			limit := Limit{Rate: 100, Period: time.Second, Algorithm: a}
			names, rawNames := benchKeyNames("user"), benchKeyNames("rawbench")
			raw, allow := make([]time.Duration, b.N), make([]time.Duration, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				key := rawNames[i%benchKeys]
				if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.Incr(ctx, key)
					p.PExpire(ctx, key, time.Second)
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if res, err := lim.Allow(ctx, names[i%benchKeys], limit); err != nil || res.Degraded {
					b.Fatalf("Allow = %+v, %v", res, err)
				}
				raw[i], allow[i] = mid.Sub(start), time.Since(mid)
			}
			b.StopTimer()
			r, l := median(raw), median(allow)
			b.ReportMetric(float64(r)/1e3, "raw-µs")
			b.ReportMetric(float64(l)/1e3, "allow-µs")
			b.ReportMetric(float64(l)/float64(r), "ratio")
		})
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

func BenchmarkMemoryPerKey(b *testing.B) {
	ctx := context.Background()
	rdb := benchClient(b)
	cases := []struct {
		name  string
		limit Limit
	}{
		{"GCRA", Limit{Rate: 100, Period: time.Minute}},
		{"FixedWindow", Limit{Rate: 100, Period: time.Minute, Algorithm: FixedWindow}},
		{"SlidingWindow", Limit{Rate: 100, Period: time.Minute, Algorithm: SlidingWindow}},
		{"SlidingWindow-Rate1000", Limit{Rate: 1000, Period: time.Minute, Algorithm: SlidingWindow}},
	}
	// Keys like users': "user:<n>", and the guide's "ratelimit:<user>:<window>".
	b.Run("raw-INCR", func(b *testing.B) {
		total := int64(0)
		for i := 0; i < b.N; i++ {
			key := fmt.Sprintf("ratelimit:user:%d:%d", i%benchKeys, time.Now().Unix()/60)
			rdb.Del(ctx, key)
			rdb.IncrBy(ctx, key, 100)
			rdb.PExpire(ctx, key, time.Minute)
			total += memoryUsage(b, rdb, key)
		}
		b.ReportMetric(float64(total)/float64(b.N), "B/key")
	})
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			lim := New(rdb, Options{}) // the default Prefix: the key names users get
			total := int64(0)
			for i := 0; i < b.N; i++ {
				key := fmt.Sprintf("user:%d", i%benchKeys)
				if err := lim.Reset(ctx, key, c.limit); err != nil {
					b.Fatal(err)
				}
				if res, err := lim.AllowN(ctx, key, c.limit, c.limit.Rate); err != nil || !res.Allowed || res.Remaining != 0 {
					b.Fatalf("filling %q: %+v, %v", key, res, err)
				}
				total += memoryUsage(b, rdb, redisKey(defaultPrefix, key, c.limit.Algorithm))
			}
			b.ReportMetric(float64(total)/float64(b.N), "B/key")
		})
	}
}

func memoryUsage(b *testing.B, rdb *redis.Client, key string) int64 {
	n, err := rdb.MemoryUsage(context.Background(), key, 0).Result()
	if err != nil {
		b.Fatalf("MEMORY USAGE %s: %v", key, err)
	}
	return n
}
