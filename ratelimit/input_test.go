package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestBadInput: every bad input is a clear error, and the go-redis client
// never dials nor sends a command (a hook counts both).
func TestBadInput(t *testing.T) {
	ok := Limit{Rate: 10, Period: time.Second}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		key   string
		limit Limit
		n     int
		want  error
		says  string // in the message
	}{
		{name: "empty key", key: "", limit: ok, n: 1, want: ErrInvalidKey, says: "empty"},
		{name: "hash tag in key", key: "user:{42}", limit: ok, n: 1, want: ErrInvalidKey, says: "reserved character"},
		{name: "control character", key: "user:\n42", limit: ok, n: 1, want: ErrInvalidKey, says: "control character"},
		{name: "not UTF-8", key: "user:\xff", limit: ok, n: 1, want: ErrInvalidKey, says: "UTF-8"},
		{name: "key too long", key: strings.Repeat("k", 1025), limit: ok, n: 1, want: ErrInvalidKey, says: "exceeds MaxLen"},
		{name: "zero limit", key: "k", limit: Limit{}, n: 1, want: ErrInvalidLimit, says: "Rate 0"},
		{name: "negative rate", key: "k", limit: Limit{Rate: -1, Period: time.Second}, n: 1, want: ErrInvalidLimit, says: "Rate -1"},
		{name: "rate too large", key: "k", limit: Limit{Rate: 1<<40 + 1, Period: time.Second}, n: 1, want: ErrInvalidLimit, says: "Rate"},
		{name: "zero period", key: "k", limit: Limit{Rate: 1}, n: 1, want: ErrInvalidLimit, says: "Period 0s"},
		{name: "negative period", key: "k", limit: Limit{Rate: 1, Period: -time.Second}, n: 1, want: ErrInvalidLimit, says: "Period -1s"},
		{name: "period under 1ms", key: "k", limit: Limit{Rate: 1, Period: time.Microsecond}, n: 1, want: ErrInvalidLimit, says: "Period 1µs"},
		{name: "negative burst", key: "k", limit: Limit{Rate: 1, Period: time.Second, Burst: -1}, n: 1, want: ErrInvalidLimit, says: "Burst -1"},
		{name: "burst refills for centuries", key: "k", limit: Limit{Rate: 1, Period: 365 * 24 * time.Hour, Burst: 200}, n: 1, want: ErrInvalidLimit, says: "to refill"},
		{name: "unknown algorithm", key: "k", limit: Limit{Rate: 1, Period: time.Second, Algorithm: 7}, n: 1, want: ErrInvalidLimit, says: "Algorithm(7)"},
		{name: "negative n", key: "k", limit: ok, n: -1, want: ErrInvalidN, says: "negative"},
		{name: "n over burst", key: "k", limit: Limit{Rate: 10, Period: time.Second, Burst: 5}, n: 6, want: ErrInvalidN, says: "exceeds Burst 5"},
		{name: "n over default burst", key: "k", limit: ok, n: 11, want: ErrInvalidN, says: "exceeds Burst 10"},
		{name: "n over fixed rate", key: "k", limit: Limit{Rate: 10, Period: time.Second, Algorithm: FixedWindow}, n: 11, want: ErrInvalidN, says: "exceeds Rate 10"},
		{name: "n over sliding rate", key: "k", limit: Limit{Rate: 10, Period: time.Second, Burst: 50, Algorithm: SlidingWindow}, n: 11, want: ErrInvalidN, says: "exceeds Rate 10"},
		{name: "cancelled context", ctx: cancelled, key: "k", limit: ok, n: 1, want: context.Canceled, says: "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := single.Client(t)
			hook := &commandCounter{}
			rdb.AddHook(hook)
			lim := newLimiter(rdb)
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			res, err := lim.AllowN(ctx, tc.key, tc.limit, tc.n)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) || res != (Result{}) {
				t.Fatalf("AllowN = %+v, %v; want an error wrapping %v that says %q", res, err, tc.want, tc.says)
			}
			t.Logf("%v", err)
			if tc.want != ErrInvalidN { // Reset takes no n
				if err := lim.Reset(ctx, tc.key, tc.limit); !errors.Is(err, tc.want) {
					t.Fatalf("Reset = %v, want an error wrapping %v", err, tc.want)
				}
			}
			if d, c := hook.dials.Load(), hook.commands.Load(); d != 0 || c != 0 {
				t.Fatalf("%d dials and %d commands reached Redis, want none", d, c)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		says string
	}{
		{"braces in Prefix", Options{Prefix: "rate{limit}"}, "reserved character"},
		{"unknown OnError", Options{OnError: 9}, "FailureMode(9)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := single.Client(t)
			hook := &commandCounter{}
			rdb.AddHook(hook)
			lim := New(rdb, tc.opts)
			_, err := lim.Allow(context.Background(), "k", PerSecond(1))
			if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Allow = %v, want an error wrapping ErrInvalidOptions that says %q", err, tc.says)
			}
			if err := lim.Reset(context.Background(), "k", PerSecond(1)); !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Reset = %v, want ErrInvalidOptions", err)
			}
			if d, c := hook.dials.Load(), hook.commands.Load(); d != 0 || c != 0 {
				t.Fatalf("%d dials and %d commands reached Redis, want none", d, c)
			}
		})
	}
	t.Run("nil client", func(t *testing.T) {
		_, err := New(nil, Options{}).Allow(context.Background(), "k", PerSecond(1))
		if !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), "nil Redis client") {
			t.Fatalf("Allow = %v, want ErrInvalidOptions for a nil client", err)
		}
	})
}

func TestLimitHelpers(t *testing.T) {
	for _, tc := range []struct {
		got, want Limit
	}{
		{PerSecond(5), Limit{Rate: 5, Period: time.Second, Burst: 5, Algorithm: GCRA}},
		{PerMinute(100), Limit{Rate: 100, Period: time.Minute, Burst: 100}},
		{PerHour(1000), Limit{Rate: 1000, Period: time.Hour, Burst: 1000}},
	} {
		if tc.got != tc.want {
			t.Errorf("got %v, want %v", tc.got, tc.want)
		}
	}
	if s := PerMinute(100).String(); s != "GCRA 100/1m0s burst 100" {
		t.Errorf("String() = %q", s)
	}
	if s := (Limit{Rate: 3, Period: time.Second, Algorithm: SlidingWindow}).String(); s != "SlidingWindow 3/1s" {
		t.Errorf("String() = %q", s)
	}
	if GCRA != Algorithm(0) || FailLocal != FailureMode(0) {
		t.Errorf("the zero values must be GCRA and FailLocal")
	}
}
