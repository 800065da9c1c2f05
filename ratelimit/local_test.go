package ratelimit

import (
	"fmt"
	"math/rand"
	"testing"
	"time"
)

// The local state (FailLocal) on a clock the tests move by hand.

const t0 = instant(1_800_000_000 * time.Second) // a whole second

func TestLocalGCRA(t *testing.T) {
	st := newLocalState(GCRA)
	limit := Limit{Rate: 10, Period: time.Second, Burst: 3} // one per 100ms
	for want := 2; want >= 0; want-- {
		if r := st.take(t0, limit, 1, false); !r.Allowed || r.Remaining != want {
			t.Fatalf("burst: %+v, want allowed with Remaining %d", r, want)
		}
	}
	now := t0.add(30 * time.Millisecond)
	r := st.take(now, limit, 1, false)
	if r.Allowed || r.RetryAfter != 70*time.Millisecond || r.ResetAfter != 270*time.Millisecond {
		t.Fatalf("after the burst: %+v, want denied, RetryAfter 70ms, ResetAfter 270ms", r)
	}
	if r := st.take(now.add(70*time.Millisecond-1), limit, 1, false); r.Allowed {
		t.Fatalf("1ns before RetryAfter: %+v, want denied", r)
	}
	if r := st.take(now.add(70*time.Millisecond), limit, 1, false); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("at RetryAfter: %+v, want allowed", r)
	}
	// force counts what Redis allowed even past the bucket.
	if r := st.take(now.add(70*time.Millisecond), limit, 2, true); !r.Allowed || st.until() != t0.add(600*time.Millisecond) {
		t.Fatalf("forced: %+v, until %v, want the TAT pushed to 600ms", r, st.until().sub(t0))
	}
}

func TestLocalFixedWindow(t *testing.T) {
	st := newLocalState(FixedWindow)
	limit := Limit{Rate: 2, Period: time.Second, Algorithm: FixedWindow}
	at := t0.add(900 * time.Millisecond)
	st.take(at, limit, 2, false)
	if r := st.take(at, limit, 1, false); r.Allowed || r.RetryAfter != 100*time.Millisecond || r.ResetAfter != 100*time.Millisecond {
		t.Fatalf("full window: %+v, want denied until its end in 100ms", r)
	}
	if st.until() != t0.add(time.Second) {
		t.Fatalf("until %v, want the window's end", st.until().sub(t0))
	}
	if r := st.take(t0.add(time.Second), limit, 2, false); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("next window: %+v, want allowed", r)
	}
}

// TestLocalSlidingWindow checks the bucketed window against the exact log
// on random traffic: never more than Rate in any window of Period, and a
// denial only when the exact count, widened by one bucket, is full.
func TestLocalSlidingWindow(t *testing.T) {
	const rate = 20
	limit := Limit{Rate: rate, Period: time.Second, Algorithm: SlidingWindow}
	width := time.Second / slidingBuckets
	rng := rand.New(rand.NewSource(1))
	st := newLocalState(SlidingWindow)
	var log []instant // admission times, one per request
	count := func(from, to instant) int {
		n := 0
		for _, a := range log {
			if a > from && a <= to {
				n++
			}
		}
		return n
	}
	now := t0
	for i := 0; i < 20000; i++ {
		now = now.add(time.Duration(rng.Int63n(int64(40 * time.Millisecond))))
		n := 1 + rng.Intn(3)
		r := st.take(now, limit, n, false)
		exact := count(now.add(-time.Second), now)
		if r.Allowed {
			for j := 0; j < n; j++ {
				log = append(log, now)
			}
			if exact+n > rate {
				t.Fatalf("request %d allowed with %d in the last second: %d > %d", i, exact, exact+n, rate)
			}
			continue
		}
		if widened := count(now.add(-time.Second-width), now); widened+n <= rate {
			t.Fatalf("request %d denied though only %d were admitted in the last second and a bucket", i, widened)
		}
		if r.RetryAfter <= 0 || r.RetryAfter > time.Second+width {
			t.Fatalf("request %d: RetryAfter %v", i, r.RetryAfter)
		}
		// RetryAfter is when it fits: a moment earlier it does not.
		if early := st.take(now.add(r.RetryAfter-1), limit, n, false); early.Allowed {
			t.Fatalf("request %d: allowed 1ns before RetryAfter %v", i, r.RetryAfter)
		}
	}
	t.Logf("%d requests admitted", len(log))
}

// TestLocalMemoryBound: the local state holds at most its bound of keys,
// dropping those back to fresh first.
func TestLocalMemoryBound(t *testing.T) {
	s := newLocalStore(128) // 2 keys per shard
	limit := Limit{Rate: 10, Period: time.Second, Burst: 10}
	req := func(i int) request {
		key := fmt.Sprintf("k%d", i)
		return request{redisKey: redisKey("p", key, GCRA), limit: limit, n: 1}
	}
	for i := 0; i < 10000; i++ {
		s.take(req(i), t0, false)
	}
	if n := s.len(); n > 128 {
		t.Fatalf("%d keys held, bound 128", n)
	}
	// A key in use survives a flood of keys that are fresh again: each
	// new key finds expired ones to drop.
	busy := req(-1)
	busy.limit = Limit{Rate: 1, Period: time.Hour, Burst: 1}
	s.take(busy, t0, false)
	at := t0.add(time.Minute)
	for i := 0; i < 10000; i++ { // each fresh again 100ms later
		at = at.add(200 * time.Millisecond)
		s.take(req(i), at, false)
	}
	if r := s.take(busy, at, false); r.Allowed {
		t.Fatalf("the busy key was forgotten: %+v", r)
	}
	s.forget(busy.redisKey)
	if r := s.take(busy, at, false); !r.Allowed {
		t.Fatalf("after forget: %+v, want a fresh key", r)
	}
}
