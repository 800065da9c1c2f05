package ratelimit

import (
	"fmt"
	"strconv"
	"time"
)

// Algorithm is how a Limit counts. The zero value is GCRA.
type Algorithm int

const (
	// GCRA (the generic cell rate algorithm, a token bucket kept as one
	// timestamp) allows Burst requests at once on a fresh key, then one per
	// Period/Rate. State: one string per key. The default.
	GCRA Algorithm = iota
	// FixedWindow allows at most Rate requests per window of length Period,
	// windows aligned on multiples of Period since the Unix epoch (on
	// Redis's clock). Cheapest, but a client may use Rate at the end of one
	// window and Rate again at the start of the next. State: one string per
	// key.
	FixedWindow
	// SlidingWindow allows at most Rate requests in any window of length
	// Period, whatever its start: no 2x burst at a boundary. It keeps a log
	// of the admission times of the last Period (a Redis list, one entry of
	// about 10 bytes per admitted request), so its memory grows with Rate.
	SlidingWindow
)

var algorithmNames = [...]string{GCRA: "GCRA", FixedWindow: "FixedWindow", SlidingWindow: "SlidingWindow"}

// String returns "GCRA", "FixedWindow" or "SlidingWindow".
func (a Algorithm) String() string { return enumName(algorithmNames[:], "Algorithm", int(a)) }

// enumName returns names[v], or "<typ>(<v>)" for a value without a name.
func enumName(names []string, typ string, v int) string {
	if v >= 0 && v < len(names) {
		return names[v]
	}
	return typ + "(" + strconv.Itoa(v) + ")"
}

// Limit is what a key may do. The zero Algorithm is GCRA.
type Limit struct {
	// Rate is how many requests a key may make per Period. Required: 1 to
	// 2^40.
	Rate int
	// Period is the length of the window (FixedWindow, SlidingWindow) or
	// the time GCRA takes to refill Rate requests. Required: 1ms to 100
	// years.
	Period time.Duration
	// Burst is, for GCRA only, how many requests a fresh key may make at
	// once (the bucket's size); it then refills one per Period/Rate.
	// Default (0): Rate. The window algorithms ignore it: their bound is
	// Rate. At most 2^40.
	Burst int
	// Algorithm is how requests are counted. Default (0): GCRA.
	Algorithm Algorithm
}

// PerSecond returns a GCRA limit of n requests per second, n at once.
func PerSecond(n int) Limit { return per(n, time.Second) }

// PerMinute returns a GCRA limit of n requests per minute, n at once.
func PerMinute(n int) Limit { return per(n, time.Minute) }

// PerHour returns a GCRA limit of n requests per hour, n at once.
func PerHour(n int) Limit { return per(n, time.Hour) }

func per(n int, period time.Duration) Limit {
	return Limit{Rate: n, Period: period, Burst: n}
}

// String describes the limit, e.g. "GCRA 100/1m0s burst 100".
func (l Limit) String() string {
	s := fmt.Sprintf("%v %d/%v", l.Algorithm, l.Rate, l.Period)
	if l.Algorithm == GCRA {
		s += " burst " + strconv.Itoa(l.Burst)
	}
	return s
}

// Result is the decision on one request.
type Result struct {
	// Allowed reports whether the request may go ahead. A denied request
	// consumed nothing.
	Allowed bool
	// Remaining is how many more requests the key may make now (after
	// this one, if it was allowed). 0 when the decision was taken without
	// Redis under FailOpen or FailClosed, where it is not known.
	Remaining int
	// RetryAfter, when the request was denied, is how long until the same
	// request would be allowed (absent other requests on the key),
	// rounded up to the microsecond; 0 when allowed. Under FailClosed it
	// is the time until the limiter next tries Redis (at most 1s).
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its fresh state
	// (full burst, empty window) if it makes no more requests.
	ResetAfter time.Duration
	// Degraded reports that Redis could not be asked (it is down, slow or
	// the circuit breaker is open) and the decision was taken by this
	// process alone, as Options.OnError says.
	Degraded bool
}

// Bounds of a Limit. Counts stay far below 2^53, where the scripts'
// floating-point arithmetic is exact; spans stay within what Redis expiry
// times and microsecond timestamps since 1970 hold.
const (
	maxCount  = 1 << 40
	minPeriod = time.Millisecond
	maxSpan   = 100 * 365 * 24 * time.Hour
)

// normalized checks l and returns it with its defaults applied (Burst).
// The error wraps ErrInvalidLimit and says which field is wrong.
func (l Limit) normalized() (Limit, error) {
	if l.Algorithm != GCRA {
		l.Burst = 0 // ignored; keeps String and comparisons honest
	} else if l.Burst == 0 {
		l.Burst = l.Rate
	}
	switch {
	case l.Algorithm < 0 || int(l.Algorithm) >= len(algorithmNames):
		return l, fmt.Errorf("%w: unknown %v", ErrInvalidLimit, l.Algorithm)
	case l.Rate <= 0 || l.Rate > maxCount:
		return l, fmt.Errorf("%w: Rate %d is not in 1..2^40", ErrInvalidLimit, l.Rate)
	case l.Period < minPeriod || l.Period > maxSpan:
		return l, fmt.Errorf("%w: Period %v is not in %v..%v", ErrInvalidLimit, l.Period, minPeriod, maxSpan)
	case l.Burst < 0 || l.Burst > maxCount:
		return l, fmt.Errorf("%w: Burst %d is not in 0..2^40", ErrInvalidLimit, l.Burst)
	case float64(l.Burst)*float64(l.Period)/float64(l.Rate) > float64(maxSpan):
		return l, fmt.Errorf("%w: Burst %d takes longer than %v to refill at %d per %v", ErrInvalidLimit, l.Burst, maxSpan, l.Rate, l.Period)
	}
	return l, nil
}

// most is the largest n that a request can ever be allowed on l: the
// bucket (GCRA) or the window (FixedWindow, SlidingWindow). l is normalized.
func (l Limit) most() int {
	if l.Algorithm == GCRA {
		return l.Burst
	}
	return l.Rate
}

// checkN checks the n of AllowN against the normalized limit l.
func checkN(l Limit, n int) error {
	if n < 0 {
		return fmt.Errorf("%w: n %d is negative", ErrInvalidN, n)
	}
	if n > l.most() {
		what := "Rate"
		if l.Algorithm == GCRA {
			what = "Burst"
		}
		return fmt.Errorf("%w: n %d exceeds %s %d of %v, so it could never be allowed", ErrInvalidN, n, what, l.most(), l)
	}
	return nil
}
