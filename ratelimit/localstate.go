package ratelimit

import "time"

// The three algorithms in memory, on the local clock. Each is at least as
// strict as its Redis script: GCRA and FixedWindow are the same arithmetic
// in integer ns (GCRA's interval rounded up); SlidingWindow counts in
// slidingBuckets buckets per Period instead of a log, so its memory does
// not grow with Rate, and counts the whole oldest bucket, so it may deny
// up to a tenth of Period's requests early but never allows more than Rate
// in any window of length Period.

// instant is a reading of the local clock: ns since the Unix epoch.
type instant int64

// add returns i moved by d.
func (i instant) add(d time.Duration) instant { return i + instant(d) }

// sub returns the time from j to i.
func (i instant) sub(j instant) time.Duration { return time.Duration(i - j) }

// slot returns the index of the span of length d that holds i, spans
// aligned on the epoch, and the start of the next one.
func (i instant) slot(d time.Duration) (index int64, next instant) {
	index = int64(i) / int64(d)
	return index, instant((index + 1) * int64(d))
}

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
type gcraState struct{ tat instant }

func (s *gcraState) until() instant { return s.tat }

func (s *gcraState) take(now instant, l Limit, n int, force bool) Result {
	interval := (l.Period + time.Duration(l.Rate) - 1) / time.Duration(l.Rate) // rounded up
	bucket := time.Duration(l.Burst) * interval
	ahead := max(s.tat.sub(now), 0)
	after := ahead + time.Duration(n)*interval
	if after > bucket && !force {
		return Result{Remaining: int(max(bucket-ahead, 0) / interval), RetryAfter: after - bucket, ResetAfter: ahead}
	}
	if n > 0 {
		s.tat = now.add(after)
	}
	return Result{Allowed: true, Remaining: int(max(bucket-after, 0) / interval), ResetAfter: after}
}

// fixedState counts the requests of one window of Period.
type fixedState struct {
	window int64   // index of the window counted
	end    instant // when it ends; 0 while empty
	count  int
}

func (s *fixedState) until() instant { return s.end }

func (s *fixedState) take(now instant, l Limit, n int, force bool) Result {
	w, next := now.slot(l.Period)
	if w != s.window {
		s.window, s.end, s.count = w, 0, 0
	}
	reset := next.sub(now)
	if s.count+n > l.Rate && !force {
		return Result{Remaining: max(l.Rate-s.count, 0), RetryAfter: reset, ResetAfter: reset}
	}
	s.count += n
	if s.count == 0 {
		return Result{Allowed: true, Remaining: l.Rate}
	}
	s.end = next
	return Result{Allowed: true, Remaining: max(l.Rate-s.count, 0), ResetAfter: reset}
}

// slidingState counts requests per bucket of Period/slidingBuckets (rounded
// up), keeping the slidingBuckets+1 buckets that can overlap a window of
// length Period ending now: the one holding now and the ten before it. A
// window (now-Period, now] starts at or after the oldest one's start, so
// their sum is never less than the window's count.
type slidingState struct {
	width   time.Duration // of a bucket; a new width (Period) starts afresh
	buckets [slidingBuckets + 1]slidingBucket
}

type slidingBucket struct {
	index int64 // slot of its requests
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
func (s *slidingState) leaves(i int64) instant {
	return instant((i + slidingBuckets + 1) * int64(s.width))
}

func (s *slidingState) until() instant {
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

func (s *slidingState) take(now instant, l Limit, n int, force bool) Result {
	if w := (l.Period + slidingBuckets - 1) / slidingBuckets; w != s.width {
		*s = slidingState{width: w}
	}
	cur, _ := now.slot(s.width)
	sum := 0
	for i := cur - slidingBuckets; i <= cur; i++ {
		sum += s.count(i)
	}
	if sum+n > l.Rate && !force {
		res := Result{Remaining: max(l.Rate-sum, 0), ResetAfter: s.until().sub(now)}
		for i, excess := cur-slidingBuckets, sum+n-l.Rate; i <= cur; i++ {
			if excess -= s.count(i); excess <= 0 {
				res.RetryAfter = s.leaves(i).sub(now)
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
	return Result{Allowed: true, Remaining: max(l.Rate-sum-n, 0), ResetAfter: max(s.until().sub(now), 0)}
}
