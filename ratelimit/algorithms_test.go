package ratelimit

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// What each algorithm promises, against Redis's own clock. A call's Redis
// time lies between the wall times at which it was sent and answered (the
// same host), which lets the tests bound it without a test clock.

// timedResult is a decision and the wall times around its call.
type timedResult struct {
	Result
	sent, answered time.Time
}

func timedAllow(t testing.TB, lim *Limiter, key string, limit Limit, n int) timedResult {
	t.Helper()
	sent := time.Now()
	res := mustAllow(t, lim, key, limit, n)
	return timedResult{res, sent, time.Now()}
}

func TestGCRABurstThenOnePerInterval(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		lim := newLimiter(b.client(t))
		for attempt := 1; attempt <= 3; attempt++ {
			if gcraBurst(t, lim) {
				return
			}
			t.Logf("attempt %d: the burst took longer than one interval on this machine; again", attempt)
		}
		t.Fatalf("the burst never fitted in one interval")
	})
}

// gcraBurst runs TestGCRABurstThenOnePerInterval once; false means the
// machine was too slow to make the burst within one interval.
func gcraBurst(t *testing.T, lim *Limiter) bool {
	key := testKey(t)
	limit := Limit{Rate: 4, Period: time.Second, Burst: 3}
	const interval = 250 * time.Millisecond
	var first timedResult
	for i, want := range []int{2, 1, 0} {
		r := timedAllow(t, lim, key, limit, 1)
		if i == 0 {
			first = r
		}
		if !r.Allowed || r.Remaining != want || r.RetryAfter != 0 {
			t.Fatalf("burst call %d = %+v (%v after the first), want allowed with Remaining %d", i, r.Result, r.answered.Sub(first.sent), want)
		}
	}
	denied := timedAllow(t, lim, key, limit, 1)
	if denied.answered.Sub(first.sent) >= interval {
		return false // a request may have been refilled
	}
	if denied.Allowed || denied.Remaining != 0 {
		t.Fatalf("call after the burst = %+v (%v after the first), want denied", denied.Result, denied.answered.Sub(first.sent))
	}
	// The bucket refills one request per interval from the first call:
	// the next one fits at first + interval.
	if lo, hi := interval-denied.answered.Sub(first.sent), interval-denied.sent.Sub(first.answered); denied.RetryAfter < lo-time.Millisecond || denied.RetryAfter > hi+time.Millisecond {
		t.Fatalf("RetryAfter %v, want within [%v, %v] (1ms slack)", denied.RetryAfter, lo, hi)
	}
	if denied.ResetAfter <= 2*interval || denied.ResetAfter > 3*interval {
		t.Fatalf("ResetAfter %v, want in (%v, %v]", denied.ResetAfter, 2*interval, 3*interval)
	}
	pollUntilAllowed(t, lim, key, limit, denied)
	// Then one per interval: the next fits one interval after the
	// refilled one did (at denied's retry time).
	fitted := denied.sent.Add(denied.RetryAfter) // at the earliest
	next := timedAllow(t, lim, key, limit, 1)
	if next.Allowed || next.RetryAfter > interval || next.RetryAfter < interval-next.answered.Sub(fitted)-time.Millisecond {
		t.Fatalf("call after the refilled one = %+v (%v after it fitted), want denied with RetryAfter just under %v",
			next.Result, next.answered.Sub(fitted), interval)
	}
	return true
}

// pollUntilAllowed calls Allow until it is allowed and checks every answer
// against denied's RetryAfter, to the millisecond: a call answered before
// the retry time (as early as Redis could have put it) must be denied, and
// one sent after it (as late as Redis could have put it) must be allowed.
func pollUntilAllowed(t *testing.T, lim *Limiter, key string, limit Limit, denied timedResult) timedResult {
	t.Helper()
	earliest := denied.sent.Add(denied.RetryAfter)
	latest := denied.answered.Add(denied.RetryAfter)
	deadline := time.Now().Add(10 * time.Second)
	for polls := 1; time.Now().Before(deadline); polls++ {
		r := timedAllow(t, lim, key, limit, 1)
		if r.Allowed {
			if r.answered.Before(earliest.Add(-time.Millisecond)) {
				t.Fatalf("allowed %v before RetryAfter said", earliest.Sub(r.answered))
			}
			t.Logf("allowed at poll %d, %v after the retry time at the earliest", polls, r.answered.Sub(earliest))
			return r
		}
		if r.sent.After(latest.Add(time.Millisecond)) {
			t.Fatalf("denied %v after RetryAfter said it would fit: %+v", r.sent.Sub(latest), r.Result)
		}
		time.Sleep(200 * time.Microsecond) // a poll, not a synchronisation
	}
	t.Fatalf("never allowed again")
	return timedResult{}
}

func TestGCRAAllowNAndPeek(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		lim := newLimiter(b.client(t))
		key := testKey(t)
		limit := PerHour(10) // no refill during the test
		if r := mustAllow(t, lim, key, limit, 0); !r.Allowed || r.Remaining != 10 || r.ResetAfter != 0 {
			t.Fatalf("peek at a fresh key = %+v, want allowed, Remaining 10, ResetAfter 0", r)
		}
		if r := mustAllow(t, lim, key, limit, 7); !r.Allowed || r.Remaining != 3 {
			t.Fatalf("AllowN(7) = %+v, want allowed with Remaining 3", r)
		}
		r := mustAllow(t, lim, key, limit, 4)
		// 4 need one more slot: it frees one interval (6 min) after the first call.
		if r.Allowed || r.Remaining != 3 || r.RetryAfter <= 5*time.Minute || r.RetryAfter > 6*time.Minute {
			t.Fatalf("AllowN(4) with 3 left = %+v, want denied, Remaining 3, RetryAfter just under 6m", r)
		}
		if r := mustAllow(t, lim, key, limit, 0); r.Remaining != 3 {
			t.Fatalf("peek after a denial = %+v: the denied request consumed something", r)
		}
		if r := mustAllow(t, lim, key, limit, 3); !r.Allowed || r.Remaining != 0 || r.ResetAfter <= 59*time.Minute || r.ResetAfter > time.Hour {
			t.Fatalf("AllowN(3) = %+v, want allowed, Remaining 0, ResetAfter just under 1h", r)
		}
	})
}

func TestFixedWindow(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		rdb := b.client(t)
		lim := newLimiter(rdb)
		key := testKey(t)
		limit := Limit{Rate: 5, Period: longPeriod(t, rdb), Algorithm: FixedWindow}
		now := redisNow(t, rdb, key)
		windowEnd := time.Duration(int64(limit.Period) - now.UnixNano()%int64(limit.Period))
		for want := 4; want >= 0; want-- {
			if r := mustAllow(t, lim, key, limit, 1); !r.Allowed || r.Remaining != want {
				t.Fatalf("call %d = %+v, want allowed with Remaining %d", 5-want, r, want)
			}
		}
		r := mustAllow(t, lim, key, limit, 1)
		if r.Allowed || r.Remaining != 0 {
			t.Fatalf("6th call = %+v, want denied", r)
		}
		// Denied until the aligned window ends, on Redis's clock.
		if r.RetryAfter != r.ResetAfter || r.RetryAfter > windowEnd || r.RetryAfter < windowEnd-5*time.Second {
			t.Fatalf("RetryAfter %v, ResetAfter %v, want both the %v left in the window", r.RetryAfter, r.ResetAfter, windowEnd)
		}
	})
}

// TestWindowBoundary is the boundary burst the guide's fixed window allows
// and the sliding window does not: Rate requests just before an aligned
// boundary, Rate more just after it.
func TestWindowBoundary(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		rdb := b.client(t)
		lim := newLimiter(rdb)
		for attempt := 1; attempt <= 3; attempt++ {
			if boundaryBurst(t, rdb, lim) {
				return
			}
			t.Logf("attempt %d: the burst before the boundary did not fit in 300ms on this machine; again", attempt)
		}
		t.Fatalf("the burst before the boundary never fitted in 300ms")
	})
}

// boundaryBurst runs TestWindowBoundary once; false means the machine was
// too slow to place the first burst before the boundary.
func boundaryBurst(t *testing.T, rdb redis.UniversalClient, lim *Limiter) bool {
	const rate, period = 20, time.Second
	fixed := Limit{Rate: rate, Period: period, Algorithm: FixedWindow}
	sliding := Limit{Rate: rate, Period: period, Algorithm: SlidingWindow}
	fixedKey, slidingKey := testKey(t), testKey(t)
	// Start 700ms into a window of Redis's clock (the sleep picks a moment;
	// it synchronises nothing).
	into := time.Duration(redisNow(t, rdb, fixedKey).UnixNano() % int64(period))
	time.Sleep((700*time.Millisecond - into + period) % period)
	var first timedResult // the sliding window's oldest request
	for i := 0; i < rate; i++ {
		mustAllow(t, lim, fixedKey, fixed, 1)
		r := timedAllow(t, lim, slidingKey, sliding, 1)
		if !r.Allowed {
			t.Fatalf("sliding call %d before the boundary denied: %+v", i, r.Result)
		}
		if i == 0 {
			first = r
		}
	}
	last := mustAllow(t, lim, fixedKey, fixed, 0)
	if last.Remaining != 0 || last.ResetAfter > 300*time.Millisecond+5*time.Millisecond {
		return false // the window rolled over during the burst
	}
	time.Sleep(last.ResetAfter + 10*time.Millisecond) // past the boundary
	fixedAllowed := 0
	for i := 0; i < rate; i++ {
		if mustAllow(t, lim, fixedKey, fixed, 1).Allowed {
			fixedAllowed++
		}
		r := timedAllow(t, lim, slidingKey, sliding, 1)
		// Every request of the first burst is still within the last second.
		if r.Allowed || r.answered.Sub(first.sent) >= period {
			t.Fatalf("sliding call %d after the boundary (%v after the first burst began) = %+v, want denied", i, r.answered.Sub(first.sent), r.Result)
		}
		// It fits again when the first burst's oldest request leaves.
		if lo, hi := period-r.answered.Sub(first.sent), period-r.sent.Sub(first.answered); r.RetryAfter < lo-time.Millisecond || r.RetryAfter > hi+time.Millisecond {
			t.Fatalf("sliding RetryAfter %v, want within [%v, %v] (1ms slack)", r.RetryAfter, lo, hi)
		}
	}
	if fixedAllowed != rate {
		t.Fatalf("fixed window allowed %d after the boundary, want %d (a new window)", fixedAllowed, rate)
	}
	t.Logf("within %v around a boundary: fixed window allowed %d, sliding window %d", time.Since(first.sent), 2*rate, rate)
	return true
}

// TestSlidingWindowAnyWindow hammers a sliding window from several
// goroutines and checks every window of length Period that the wall clock
// can prove: requests sent and answered within it are at most Rate.
func TestSlidingWindowAnyWindow(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		lim := newLimiter(b.client(t))
		key := testKey(t)
		const rate, period, runFor = 10, 300 * time.Millisecond, time.Second
		limit := Limit{Rate: rate, Period: period, Algorithm: SlidingWindow}
		var mu sync.Mutex
		var allowed []timedResult
		var wg sync.WaitGroup
		stop := time.Now().Add(runFor)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					r := timedAllow(t, lim, key, limit, 1)
					if r.Allowed {
						mu.Lock()
						allowed = append(allowed, r)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		slices.SortFunc(allowed, func(a, b timedResult) int { return a.sent.Compare(b.sent) })
		for i, a := range allowed {
			in := 0
			for _, c := range allowed[i:] {
				if c.answered.Sub(a.sent) < period {
					in++
				}
			}
			if in > rate {
				t.Fatalf("%d requests allowed within %v of %v, want at most %d", in, period, a.sent, rate)
			}
		}
		// And it does allow: each Period brings Rate back.
		if min := rate * int(runFor/period-1); len(allowed) < min {
			t.Fatalf("%d allowed in %v, want at least %d", len(allowed), runFor, min)
		}
		t.Logf("%d allowed in %v at %d per %v", len(allowed), runFor, rate, period)
	})
}

// TestSlidingWindowTrim seeds a log with live and expired entries and
// checks that one call drops exactly the expired ones, through each path:
// none, a few (one LINDEX each), many (binary search), all of them.
func TestSlidingWindowTrim(t *testing.T) {
	forBackends(t, func(t *testing.T, b backend) {
		rdb := b.client(t)
		lim := newLimiter(rdb)
		const rate = 200
		limit := Limit{Rate: rate, Period: time.Minute, Algorithm: SlidingWindow}
		for _, tc := range []struct{ live, expired int }{
			{0, 0}, {5, 0}, {5, 1}, {5, 3}, {5, 4}, {5, 5}, {5, 17}, {0, 1}, {0, 4}, {0, 9}, {150, 49}, {199, 1},
		} {
			key := testKey(t)
			rk := redisKey("rltest", key, SlidingWindow)
			now := redisNow(t, rdb, key).UnixMicro()
			var log []any // newest first
			for i := 0; i < tc.live; i++ {
				log = append(log, now-int64(i)*1000)
			}
			for i := 0; i < tc.expired; i++ {
				log = append(log, now-int64(time.Minute/time.Microsecond)-int64(i)*1000)
			}
			if len(log) > 0 {
				if err := rdb.RPush(ctxT(t), rk, log...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			r := mustAllow(t, lim, key, limit, 1)
			if n := rdb.LLen(ctxT(t), rk).Val(); !r.Allowed || r.Remaining != rate-tc.live-1 || n != int64(tc.live+1) {
				t.Fatalf("%d live and %d expired entries: %+v, %d entries left; want allowed, Remaining %d, %d entries",
					tc.live, tc.expired, r, n, rate-tc.live-1, tc.live+1)
			}
		}
	})
}
