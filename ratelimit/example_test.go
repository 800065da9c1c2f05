package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/ratelimit"
)

// redisAddr is where the examples find Redis (the tests set REDIS_ADDR to
// a server of their own).
func redisAddr() string {
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		return addr
	}
	return "localhost:6379"
}

// GCRA, the default: a burst (here all 3 requests of the hour at once),
// then one request per Period/Rate (20 minutes).
func Example() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()

	lim := ratelimit.New(rdb, ratelimit.Options{})
	limit := ratelimit.PerHour(3)
	// Start afresh: the example may run more than once against one Redis.
	if err := lim.Reset(ctx, "example:user:42", limit); err != nil {
		fmt.Println(err)
		return
	}
	for i := 0; i < 4; i++ {
		res, err := lim.Allow(ctx, "example:user:42", limit)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("allowed=%v remaining=%d retry in %v\n", res.Allowed, res.Remaining, res.RetryAfter.Round(time.Minute))
	}
	// Output:
	// allowed=true remaining=2 retry in 0s
	// allowed=true remaining=1 retry in 0s
	// allowed=true remaining=0 retry in 0s
	// allowed=false remaining=0 retry in 20m0s
}

// A sliding window: at most Rate in any window of Period, whatever its
// start. AllowN spends several at once; a request that does not fit
// spends nothing.
func ExampleLimiter_AllowN() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()

	lim := ratelimit.New(rdb, ratelimit.Options{Prefix: "example"})
	limit := ratelimit.Limit{Rate: 10, Period: time.Minute, Algorithm: ratelimit.SlidingWindow}
	if err := lim.Reset(ctx, "upload:7", limit); err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range []int{3, 8, 7} {
		res, err := lim.AllowN(ctx, "upload:7", limit, n)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%d: allowed=%v remaining=%d retry in %v\n", n, res.Allowed, res.Remaining, res.RetryAfter.Round(time.Second))
	}
	_, err := lim.AllowN(ctx, "upload:7", limit, 11) // more than a window holds
	fmt.Println(errors.Is(err, ratelimit.ErrInvalidN))
	// Output:
	// 3: allowed=true remaining=7 retry in 0s
	// 8: allowed=false remaining=7 retry in 1m0s
	// 7: allowed=true remaining=0 retry in 0s
	// true
}

// HTTP middleware: limit per client address, answer 429 with Retry-After.
func ExampleLimiter_Allow_httpMiddleware() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer rdb.Close()
	lim := ratelimit.New(rdb, ratelimit.Options{Prefix: "example"})
	limit := ratelimit.PerMinute(2)

	limited := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				host = r.RemoteAddr
			}
			res, err := lim.Allow(r.Context(), "ip:"+host, limit)
			if err != nil { // bad input, not a Redis outage
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
			if !res.Allowed {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(res.RetryAfter.Seconds()))))
				http.Error(w, "too many requests", http.StatusTooManyRequests)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	h := limited(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))

	req := httptest.NewRequest("GET", "/", nil) // from 192.0.2.1
	if err := lim.Reset(req.Context(), "ip:192.0.2.1", limit); err != nil {
		fmt.Println(err)
		return
	}
	for i := 0; i < 3; i++ {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Printf("%d remaining=%s retry-after=%s\n", rec.Code, rec.Header().Get("RateLimit-Remaining"), rec.Header().Get("Retry-After"))
	}
	// Output:
	// 200 remaining=1 retry-after=
	// 200 remaining=0 retry-after=
	// 429 remaining=0 retry-after=30
}

// While Redis cannot be reached, Allow still answers at once, without an
// error, as OnError says. Here every dial fails.
func ExampleFailureMode() {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{
		Addr: redisAddr(),
		Dialer: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("Redis is down")
		},
		DialerRetries: 1,
	})
	defer rdb.Close()

	for _, mode := range []ratelimit.FailureMode{ratelimit.FailLocal, ratelimit.FailOpen, ratelimit.FailClosed} {
		lim := ratelimit.New(rdb, ratelimit.Options{OnError: mode})
		var allowed []bool
		degraded := true
		for i := 0; i < 3; i++ {
			res, err := lim.Allow(ctx, "user:42", ratelimit.PerHour(2))
			if err != nil {
				fmt.Println(err)
				return
			}
			allowed = append(allowed, res.Allowed)
			degraded = degraded && res.Degraded
		}
		fmt.Println(mode, allowed, "degraded:", degraded)
	}
	// Output:
	// FailLocal [true true false] degraded: true
	// FailOpen [true true true] degraded: true
	// FailClosed [false false false] degraded: true
}
