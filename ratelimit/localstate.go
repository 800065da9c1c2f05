package ratelimit

import "time"

// The three algorithms in memory, on the local clock (ns since the epoch).
// Each is at least as strict as its Redis script: GCRA and FixedWindow are
// the same arithmetic in integer ns (GCRA's interval rounded up);
// SlidingWindow counts in slidingBuckets buckets per Period instead of a
// log, so its memory does not grow with Rate, and counts the whole oldest
// bucket, so it may deny up to a tenth of Period's requests early but
// never allows more than Rate in any window of length Period.

const slidingBuckets = 10

func newLocalState(a Algorithm) localState {
	switch a {
	case FixedWindow:
		return &fixedState{}
	case SlidingWindow:
		return &slidingState{}
	}
	return &gcraState{}
}

// gcraState is the theoretical arrival time of the next request.
type gcraState struct{ tat int64 }

func (s *gcraState) until() int64 { return s.tat }

func (s *gcraState) take(now int64, l Limit, n int, force bool) Result {
	interval := ceilDiv(int64(l.Period), int64(l.Rate))
	bucket := int64(l.Burst) * interval
	ahead := max(s.tat-now, 0)
	after := ahead + int64(n)*interval
	if after > bucket && !force {
		return Result{
			Remaining:  int(max(bucket-ahead, 0) / interval),
			RetryAfter: time.Duration(after - bucket),
			ResetAfter: time.Duration(ahead),
		}
	}
	if n > 0 {
		s.tat = now + after
	}
	return Result{Allowed: true, Remaining: int(max(bucket-after, 0) / interval), ResetAfter: time.Duration(after)}
}

// fixedState counts the requests of one window, index now/Period.
type fixedState struct {
	window int64
	end    int64 // ns since the epoch when the window ends; 0 while empty
	count  int
}

func (s *fixedState) until() int64 { return s.end }

func (s *fixedState) take(now int64, l Limit, n int, force bool) Result {
	period := int64(l.Period)
	if w := now / period; w != s.window {
		s.window, s.end, s.count = w, 0, 0
	}
	reset := time.Duration((s.window+1)*period - now)
	if s.count+n > l.Rate && !force {
		return Result{Remaining: max(l.Rate-s.count, 0), RetryAfter: reset, ResetAfter: reset}
	}
	s.count += n
	if s.count == 0 {
		return Result{Allowed: true, Remaining: l.Rate}
	}
	s.end = (s.window + 1) * period
	return Result{Allowed: true, Remaining: max(l.Rate-s.count, 0), ResetAfter: reset}
}

// slidingState counts requests per bucket of Period/slidingBuckets (rounded
// up), keeping the slidingBuckets+1 buckets that can overlap a window of
// length Period ending now: the one holding now and the ten before it. A
// window (now-Period, now] starts at or after the oldest one's start, so
// their sum is never less than the window's count.
type slidingState struct {
	width   int64 // ns per bucket; a new width (Period) starts afresh
	buckets [slidingBuckets + 1]slidingBucket
}

type slidingBucket struct {
	index int64 // time/width of its requests
	count int
}

// count returns the requests of bucket i.
func (s *slidingState) count(i int64) int {
	if b := s.buckets[i%(slidingBuckets+1)]; b.index == i {
		return b.count
	}
	return 0
}

// leaves is when bucket i stops overlapping windows that end after it.
func (s *slidingState) leaves(i int64) int64 { return (i + slidingBuckets + 1) * s.width }

func (s *slidingState) until() int64 {
	newest := int64(-1)
	for _, b := range s.buckets {
		if b.count > 0 && b.index > newest {
			newest = b.index
		}
	}
	if newest < 0 {
		return 0
	}
	return s.leaves(newest)
}

func (s *slidingState) take(now int64, l Limit, n int, force bool) Result {
	if w := ceilDiv(int64(l.Period), slidingBuckets); w != s.width {
		*s = slidingState{width: w}
	}
	cur := now / s.width
	sum := 0
	for i := cur - slidingBuckets; i <= cur; i++ {
		sum += s.count(i)
	}
	if sum+n > l.Rate && !force {
		res := Result{Remaining: max(l.Rate-sum, 0), ResetAfter: time.Duration(s.until() - now)}
		for i, excess := cur-slidingBuckets, sum+n-l.Rate; i <= cur; i++ {
			if excess -= s.count(i); excess <= 0 {
				res.RetryAfter = time.Duration(s.leaves(i) - now)
				break
			}
		}
		return res
	}
	if n > 0 {
		b := &s.buckets[cur%(slidingBuckets+1)]
		if b.index != cur {
			*b = slidingBucket{index: cur}
		}
		b.count += n
	}
	return Result{Allowed: true, Remaining: max(l.Rate-sum-n, 0), ResetAfter: time.Duration(max(s.until()-now, 0))}
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
