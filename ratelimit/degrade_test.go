package ratelimit

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/remote"
)

// Redis down, slow or failing over: Allow answers within the call bound,
// never with an error, as OnError says, and the breaker's transitions are
// logged once each. These tests use the default call bound (100ms) and
// servers of their own, which they kill and pause.

// logged counts the entries of logs whose message contains text.
func logged(logs *observer.ObservedLogs, level zapcore.Level, text string) int {
	n := 0
	for _, e := range logs.All() {
		if e.Level == level && strings.Contains(e.Message, text) {
			n++
		}
	}
	return n
}

// timedDegraded calls Allow, which must answer without an error, degraded,
// within bound.
func timedDegraded(t *testing.T, lim *Limiter, key string, limit Limit, bound time.Duration) Result {
	t.Helper()
	start := time.Now()
	res, err := lim.Allow(context.Background(), key, limit)
	took := time.Since(start)
	if err != nil || !res.Degraded {
		t.Fatalf("Allow with Redis down = %+v, %v; want a degraded decision and no error", res, err)
	}
	if took > bound {
		t.Fatalf("Allow with Redis down took %v, want at most %v", took, bound)
	}
	return res
}

func TestRedisDown(t *testing.T) {
	limits := []Limit{
		PerHour(3),
		{Rate: 3, Period: time.Hour, Algorithm: FixedWindow},
		{Rate: 3, Period: time.Hour, Algorithm: SlidingWindow},
	}
	for _, tc := range []struct {
		mode FailureMode
		want []bool // decisions after one request allowed by Redis
	}{
		{FailLocal, []bool{true, true, false, false}}, // it remembers what Redis allowed
		{FailOpen, []bool{true, true, true, true}},
		{FailClosed, []bool{false, false, false, false}},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			srv := redistest.Start(t)
			core, logs := observer.New(zap.DebugLevel)
			lim := New(srv.Client(t), Options{OnError: tc.mode, Logger: zap.New(core)})
			key := testKey(t)
			for _, limit := range limits {
				mustAllow(t, lim, key, limit, 1)
			}
			srv.Kill(t)
			for _, limit := range limits {
				for i, want := range tc.want {
					// A refused connection fails at once; 500ms is slack for a busy machine.
					if res := timedDegraded(t, lim, key, limit, 500*time.Millisecond); res.Allowed != want {
						t.Fatalf("%v, call %d with Redis down: %+v, want allowed=%v", limit, i, res, want)
					}
				}
			}
			if n := logged(logs, zap.WarnLevel, "circuit breaker open"); n != 1 {
				t.Fatalf("%d warnings that the breaker opened, want 1", n)
			}
			// Reset cannot reach Redis and says so, but clears the local state.
			if err := lim.Reset(context.Background(), key, limits[0]); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Reset with the breaker open = %v, want ErrUnavailable", err)
			}
			if res := timedDegraded(t, lim, key, limits[0], 500*time.Millisecond); res.Allowed != tc.want[0] {
				t.Fatalf("after Reset: %+v, want allowed=%v", res, tc.want[0])
			}
			srv.Restart(t)
			waitRedisDecides(t, lim, key, limits[0], 10*time.Second)
			if o, c := logged(logs, zap.WarnLevel, "circuit breaker open"), logged(logs, zap.InfoLevel, "circuit breaker closed"); o != 1 || c != 1 {
				t.Fatalf("logged the opening %d times and the closing %d times, want once each", o, c)
			}
		})
	}
}

// TestRedisPaused: a server that accepts commands but answers none (CLIENT
// PAUSE) holds no call past the bound, also on a client that ignores
// context deadlines (it would wait its 2s ReadTimeout), and once the
// breaker opens calls stop going to Redis (a hook counts them).
func TestRedisPaused(t *testing.T) {
	for _, honours := range []bool{true, false} {
		name := map[bool]string{true: "ContextTimeoutEnabled", false: "deadlines ignored"}[honours]
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			opts := srv.RedisOptions()
			opts.ContextTimeoutEnabled = honours
			rdb := redis.NewClient(opts)
			t.Cleanup(func() { _ = rdb.Close() })
			hook := &commandCounter{}
			rdb.AddHook(hook)
			lim := New(rdb, Options{})
			key := testKey(t)
			limit := PerMinute(100)
			mustAllow(t, lim, key, limit, 1)
			srv.Pause(t, 5*time.Second)
			sent := hook.scripts.Load()
			start := time.Now()
			for i := 0; i < 20; i++ {
				// The bound plus slack for a busy machine, well under ReadTimeout.
				if res := timedDegraded(t, lim, key, limit, defaultCallTimeout+400*time.Millisecond); !res.Allowed {
					t.Fatalf("call %d: %+v, want allowed by the local state", i, res)
				}
			}
			took := time.Since(start)
			// One more may be the breaker's probe, if a second has passed.
			if n := hook.scripts.Load() - sent; n < breakerFailures || n > breakerFailures+int64(took/breakerOpenFor) {
				t.Fatalf("%d of 20 calls went to the paused Redis in %v, want %d (then the breaker is open)", n, took, breakerFailures)
			}
			t.Logf("20 calls in %v while Redis was paused", took)
		})
	}
}

// TestRedisOutOfMemory: a Redis that refuses writes (OOM, maxmemory with
// noeviction) cannot limit: its error replies degrade like an outage.
func TestRedisOutOfMemory(t *testing.T) {
	srv := redistest.Start(t)
	srv.ConfigSet(t, "maxmemory-policy", "noeviction")
	srv.ConfigSet(t, "maxmemory", "1")
	lim := New(srv.Client(t), Options{})
	res := timedDegraded(t, lim, testKey(t), PerSecond(5), 500*time.Millisecond)
	if !res.Allowed || res.Remaining != 4 {
		t.Fatalf("Allow with Redis out of memory = %+v, want allowed by the local state", res)
	}
}

// TestClusterMasterDown kills the master of a key's slot: calls degrade
// within the bound until the replica takes over, then go to Redis again.
func TestClusterMasterDown(t *testing.T) {
	c := redistest.StartCluster(t)
	lim := New(c.Client(t), Options{})
	key := testKey(t)
	limit := Limit{Rate: 5, Period: time.Hour, Algorithm: SlidingWindow}
	mustAllow(t, lim, key, limit, 1)
	c.KillMaster(t, c.NodeForSlot(t, int(remote.Slot(redisKey(defaultPrefix, key, SlidingWindow)))))
	for i := 0; i < 10; i++ {
		timedDegraded(t, lim, key, limit, defaultCallTimeout+400*time.Millisecond)
	}
	took := c.WaitFailover(t)
	t.Logf("failover in %v; Redis decides again %v after it", took, waitRedisDecides(t, lim, key, limit, 20*time.Second))
}

// waitRedisDecides polls Allow until a decision comes from Redis again
// (the breaker probes once a second) and returns how long that took.
func waitRedisDecides(t *testing.T, lim *Limiter, key string, limit Limit, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		res, err := lim.Allow(context.Background(), key, limit)
		if err != nil {
			t.Fatalf("Allow while Redis comes back: %v", err)
		}
		if !res.Degraded {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("still degraded %v after Redis came back", within)
		}
		time.Sleep(20 * time.Millisecond) // a poll
	}
}

// TestFailLocalExactInOneProcess: with Redis unreachable, goroutines of one
// process together get exactly the limit from the local state.
func TestFailLocalExactInOneProcess(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:1",
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("no Redis in this test")
		},
		MaxRetries: -1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	lim := New(rdb, Options{})
	for _, limit := range []Limit{
		{Rate: 1, Period: time.Hour, Burst: 30},
		{Rate: 30, Period: time.Hour, Algorithm: FixedWindow},
		{Rate: 30, Period: time.Hour, Algorithm: SlidingWindow},
	} {
		key := testKey(t)
		var mu sync.Mutex
		allowed := 0
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					res, err := lim.Allow(context.Background(), key, limit)
					if err != nil || !res.Degraded {
						t.Errorf("Allow = %+v, %v; want degraded, no error", res, err)
						return
					}
					if res.Allowed {
						mu.Lock()
						allowed++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if allowed != 30 {
			t.Fatalf("%v: %d of 160 allowed locally, want exactly 30", limit, allowed)
		}
	}
}
