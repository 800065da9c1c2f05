package ratelimit

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/remote"
)

var allAlgorithms = []Algorithm{GCRA, FixedWindow, SlidingWindow}

// TestKeysExpireAndShareASlot checks what each script leaves in Redis: the
// documented key, in the user key's hash slot, with an expiry no longer
// than its state lasts.
func TestKeysExpireAndShareASlot(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		rdb := b.client(t)
		lim := newLimiter(rdb)
		key := testKey(t)
		for _, a := range allAlgorithms {
			limit := Limit{Rate: 100, Period: time.Minute, Algorithm: a}
			mustAllow(t, lim, key, limit, 1)
			rk := "rltest:{" + key + "}:" + map[Algorithm]string{GCRA: "gcra", FixedWindow: "fixed", SlidingWindow: "sliding"}[a]
			ttl, err := rdb.PTTL(ctxT(t), rk).Result()
			if err != nil {
				t.Fatal(err)
			}
			// GCRA's state lasts one interval (600ms) after one request;
			// a window's, at most a Period.
			maxTTL := time.Minute
			if a == GCRA {
				maxTTL = 600 * time.Millisecond
			}
			if ttl <= 0 || ttl > maxTTL {
				t.Fatalf("%v: PTTL of %q = %v, want a positive expiry of at most the state's life", a, rk, ttl)
			}
			if remote.Slot(rk) != remote.Slot(key) {
				t.Fatalf("%v: %q is not in the slot of %q", a, rk, key)
			}
		}
		if !b.isCluster {
			return
		}
		// The hash tag moves users' keys, and their scripts, across the masters.
		cc := rdb.(*redis.ClusterClient)
		masters := map[string]bool{}
		for i := 0; i < 30; i++ {
			node, err := cc.MasterForKey(ctxT(t), redisKey("rltest", key+":"+string(rune('a'+i)), GCRA))
			if err != nil {
				t.Fatal(err)
			}
			masters[node.Options().Addr] = true
		}
		if len(masters) < 2 {
			t.Fatalf("30 keys all on %v", masters)
		}
	})
}

// TestTimeFromRedis checks that nothing of the app host's clock goes to
// Redis: the scripts' arguments are the limit and n, nothing else, so two
// hosts whose clocks disagree still share one limit.
func TestTimeFromRedis(t *testing.T) {
	rdb := single.Client(t)
	rec := &argRecorder{}
	rdb.AddHook(rec)
	lim := newLimiter(rdb)
	key := testKey(t)
	for _, a := range allAlgorithms {
		limit := Limit{Rate: 7, Period: 90 * time.Second, Burst: 9, Algorithm: a}
		mustAllow(t, lim, key, limit, 2)
		want := []any{int64(90 * time.Second), 7, 2}
		if a == GCRA {
			want = append(want, 9)
		}
		got := rec.last()
		if len(got) < 4 {
			t.Fatalf("%v: last script call %v", a, got)
		}
		if args := got[3+1:]; !slices.Equal(args, want) { // evalsha <sha> <numkeys> <key> args...
			t.Fatalf("%v: script arguments %v, want %v", a, args, want)
		}
	}
}

// argRecorder is a go-redis hook that keeps the last script call's
// arguments.
type argRecorder struct {
	mu   sync.Mutex
	args []any
}

func (r *argRecorder) last() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.args
}

func (r *argRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *argRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			r.mu.Lock()
			r.args = cmd.Args()
			r.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (r *argRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestReset(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		lim := newLimiter(b.client(t))
		key := testKey(t)
		for _, a := range allAlgorithms {
			limit := Limit{Rate: 3, Period: time.Hour, Algorithm: a}
			mustAllow(t, lim, key, limit, 3)
			if r := mustAllow(t, lim, key, limit, 1); r.Allowed {
				t.Fatalf("%v: allowed past the limit: %+v", a, r)
			}
		}
		gcra := Limit{Rate: 3, Period: time.Hour}
		if err := lim.Reset(ctxT(t), key, gcra); err != nil {
			t.Fatal(err)
		}
		if r := mustAllow(t, lim, key, gcra, 1); !r.Allowed || r.Remaining != 2 {
			t.Fatalf("after Reset: %+v, want allowed with Remaining 2", r)
		}
		// The key's other algorithms keep their state.
		for _, a := range []Algorithm{FixedWindow, SlidingWindow} {
			if r := mustAllow(t, lim, key, Limit{Rate: 3, Period: time.Hour, Algorithm: a}, 0); r.Remaining != 0 {
				t.Fatalf("%v after a GCRA Reset: %+v, want its state kept", a, r)
			}
		}
	})
}

// TestForeignValue: a key of the limiter holding something else is an
// error from a working Redis, not an outage and not a silent decision.
func TestForeignValue(t *testing.T) {
	rdb := single.Client(t)
	lim := newLimiter(rdb)
	key := testKey(t)
	if err := rdb.HSet(ctxT(t), redisKey("rltest", key, SlidingWindow), "x", "y").Err(); err != nil {
		t.Fatal(err)
	}
	res, err := lim.Allow(ctxT(t), key, Limit{Rate: 3, Period: time.Hour, Algorithm: SlidingWindow})
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || res != (Result{}) {
		t.Fatalf("Allow on a hash = %+v, %v; want a WRONGTYPE error", res, err)
	}
	if !strings.Contains(err.Error(), key) {
		t.Fatalf("error %q does not name the key", err)
	}
	if lim.br.State() != breaker.Closed {
		t.Fatalf("breaker %v after an error reply, want closed: Redis works", lim.br.State())
	}
}
