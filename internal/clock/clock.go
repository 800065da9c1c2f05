package clock

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Time is a reading of a Coarse clock: nanoseconds since the clock started,
// on the monotonic clock. Only readings of the same clock compare; the type
// keeps them apart from wall times and from durations.
type Time int64

// Add returns t moved by d.
func (t Time) Add(d time.Duration) Time { return t + Time(d) }

// Sub returns the duration t-u.
func (t Time) Sub(u Time) time.Duration { return time.Duration(t - u) }

// Never is a Time later than every reading.
const Never = Time(math.MaxInt64)

// DefaultResolution is the tick of a Coarse clock created with a
// non-positive resolution.
const DefaultResolution = time.Millisecond

// Coarse is a clock whose Now is one atomic load. A background goroutine
// advances it every Resolution, so Now lags real time by at most about one
// Resolution (more if the goroutine is starved). Values are nanoseconds since
// the clock was started, measured on the monotonic clock, not wall time.
//
// Create a Coarse with NewCoarse and call Stop when done. All methods are
// safe for concurrent use.
type Coarse struct {
	now   atomic.Int64 // a Time
	start time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// NewCoarse starts a Coarse clock that advances every resolution
// (DefaultResolution if resolution <= 0).
func NewCoarse(resolution time.Duration) *Coarse {
	if resolution <= 0 {
		resolution = DefaultResolution
	}
	c := &Coarse{
		start: time.Now(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	go c.run(resolution)
	return c
}

func (c *Coarse) run(resolution time.Duration) {
	defer close(c.done)
	t := time.NewTicker(resolution)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.Precise()
		case <-c.stop:
			return
		}
	}
}

// Now returns the last stored time: nanoseconds since the clock started,
// behind real time by at most about one resolution.
func (c *Coarse) Now() Time {
	return Time(c.now.Load())
}

// Precise reads the monotonic clock, stores the result so that later Now
// calls see it, and returns it. It still works after Stop.
func (c *Coarse) Precise() Time {
	t := int64(time.Since(c.start))
	// Only move forward: the ticker and callers of Precise race, and a store
	// of an older reading would make Now go backwards.
	for {
		old := c.now.Load()
		if t <= old {
			return Time(old)
		}
		if c.now.CompareAndSwap(old, t) {
			return Time(t)
		}
	}
}

// Stop stops the background goroutine and waits for it to exit. After Stop,
// Now keeps returning the last stored value. Stop is idempotent and safe to
// call concurrently.
func (c *Coarse) Stop() {
	c.once.Do(func() { close(c.stop) })
	<-c.done
}
