package clock

import (
	"sync"
	"sync/atomic"
	"time"
)

// Source is a monotonic time source in nanoseconds. Both Coarse and Manual
// satisfy it.
type Source interface {
	Now() int64
}

var (
	_ Source = (*Coarse)(nil)
	_ Source = (*Manual)(nil)
)

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
	now   atomic.Int64
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
func (c *Coarse) Now() int64 {
	return c.now.Load()
}

// Precise reads the monotonic clock, stores the result so that later Now
// calls see it, and returns it. It still works after Stop.
func (c *Coarse) Precise() int64 {
	t := int64(time.Since(c.start))
	// Only move forward: the ticker and callers of Precise race, and a store
	// of an older reading would make Now go backwards.
	for {
		old := c.now.Load()
		if t <= old {
			return old
		}
		if c.now.CompareAndSwap(old, t) {
			return t
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

// Manual is a clock for tests: Now returns what Set and Advance put there.
// The zero value is ready to use and reads 0. It is safe for concurrent use.
type Manual struct {
	now atomic.Int64
}

// Now returns the current manual time in nanoseconds.
func (m *Manual) Now() int64 {
	return m.now.Load()
}

// Set sets the manual time to ns nanoseconds.
func (m *Manual) Set(ns int64) {
	m.now.Store(ns)
}

// Advance moves the manual time by d (backwards if d is negative).
func (m *Manual) Advance(d time.Duration) {
	m.now.Add(int64(d))
}
