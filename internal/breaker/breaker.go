package breaker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// State is the state of a Breaker.
type State int32

// The states of a Breaker.
const (
	Closed   State = iota // calls go through; outcomes are counted
	Open                  // calls are refused until OpenFor has passed
	HalfOpen              // one probe is out; its outcome decides
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Options configures a Breaker. The zero value is usable: every field that
// is zero, negative (or NaN) gets its default.
type Options struct {
	// ConsecutiveFailures opens the breaker after this many failures in a
	// row. Default 5.
	ConsecutiveFailures int
	// FailureRatio opens the breaker when failures/requests >= this ratio
	// over at least MinRequests requests in the current Window. Default 0.5.
	// A ratio above 1 turns this rule off.
	FailureRatio float64
	// MinRequests is the number of requests the current Window must hold
	// before FailureRatio applies. Default 20.
	MinRequests int
	// Window is how long the counts for FailureRatio live: they reset at the
	// first report after Window has passed since the last reset. Default 10s.
	Window time.Duration
	// OpenFor is how long an open breaker refuses calls before it lets one
	// probe through, and how long a probe may stay out before another one is
	// let through. Default 1s.
	OpenFor time.Duration
	// OnChange, if not nil, is called on every transition, outside the
	// breaker's lock. Calls are serialised and in transition order; a
	// transition made while another goroutine is inside OnChange is delivered
	// by that goroutine, so OnChange may call back into the Breaker.
	OnChange func(from, to State)
	// Now is the clock, for tests; it must be safe for concurrent use.
	// Default time.Now.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.ConsecutiveFailures <= 0 {
		o.ConsecutiveFailures = 5
	}
	if !(o.FailureRatio > 0) { // also catches NaN
		o.FailureRatio = 0.5
	}
	if o.MinRequests <= 0 {
		o.MinRequests = 20
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.OpenFor <= 0 {
		o.OpenFor = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Stats are a Breaker's counters since New.
type Stats struct {
	// Opens is how many times the breaker went from Closed to Open; a probe
	// that fails and reopens it does not count again.
	Opens uint64
	// Rejected is how many times Allow returned false.
	Rejected uint64
	// OpenTime is the total time spent not Closed (Open or HalfOpen),
	// including the current spell if the breaker is not Closed now.
	OpenTime time.Duration
}

// Breaker is a circuit breaker. Create one with New; all methods are safe
// for concurrent use.
type Breaker struct {
	// state is written only under mu, but read without it by Allow.
	state atomic.Int32
	// nextProbe, while not Closed, is when the next probe may go out, as
	// time since epoch. It lets Allow refuse calls without the lock.
	nextProbe atomic.Int64
	rejected  atomic.Uint64

	o     Options
	epoch time.Time // Now at New; durations since it compare across goroutines

	mu          sync.Mutex
	consecutive int // failures in a row, while Closed
	requests    int // reports in the current window, while Closed
	failures    int // failed reports in the current window, while Closed
	windowStart time.Time
	trippedAt   time.Time     // start of the current spell out of Closed
	openTime    time.Duration // finished spells out of Closed
	opens       uint64
	pending     []change // transitions not yet given to OnChange
	notifying   bool     // a goroutine is delivering pending
}

type change struct{ from, to State }

// New returns a closed Breaker configured by o (see Options for defaults).
func New(o Options) *Breaker {
	o = o.withDefaults()
	now := o.Now()
	return &Breaker{o: o, epoch: now, windowStart: now}
}

// Allow reports whether a call may go to Redis now. While Closed it is a
// single atomic load. While Open it returns false until OpenFor has passed
// since the breaker opened; then the breaker becomes HalfOpen and exactly one
// caller gets true: the probe, which must report with Done. Others get false
// until the probe reports, or until OpenFor has passed since the probe went
// out, when another probe is let through in case the first was lost.
func (b *Breaker) Allow() bool {
	if State(b.state.Load()) == Closed {
		return true
	}
	return b.allowSlow()
}

func (b *Breaker) allowSlow() bool {
	// Most calls while open are refused here, without the lock.
	if b.o.Now().Sub(b.epoch) < time.Duration(b.nextProbe.Load()) {
		b.rejected.Add(1)
		return false
	}
	b.mu.Lock()
	now := b.o.Now()
	st := State(b.state.Load())
	ok := st == Closed // closed while we waited for the lock
	if !ok && now.Sub(b.epoch) >= time.Duration(b.nextProbe.Load()) {
		ok = true // the probe
		if st == Open {
			b.setLocked(HalfOpen, now)
		} else {
			b.nextProbe.Store(int64(now.Sub(b.epoch) + b.o.OpenFor)) // replaces a lost probe
		}
	}
	b.mu.Unlock()
	if !ok {
		b.rejected.Add(1)
	}
	if st == Open && ok {
		b.notify()
	}
	return ok
}

// Done reports the outcome of a call that Allow let through; failed counts
// it as a failure. While Closed it updates the counts and may open the
// breaker. While HalfOpen it is taken as the probe's report: success closes
// the breaker and resets the counts, failure reopens it for another OpenFor.
// While Open it is ignored (the call was let through before it opened).
func (b *Breaker) Done(failed bool) {
	b.mu.Lock()
	from := State(b.state.Load())
	switch from {
	case Closed:
		now := b.o.Now()
		if now.Sub(b.windowStart) >= b.o.Window {
			b.requests, b.failures, b.windowStart = 0, 0, now
		}
		b.requests++
		if failed {
			b.failures++
			b.consecutive++
		} else {
			b.consecutive = 0
		}
		if b.consecutive >= b.o.ConsecutiveFailures ||
			b.requests >= b.o.MinRequests && float64(b.failures) >= b.o.FailureRatio*float64(b.requests) {
			b.setLocked(Open, now)
		}
	case HalfOpen:
		if failed {
			b.setLocked(Open, b.o.Now())
		} else {
			b.setLocked(Closed, b.o.Now())
		}
	}
	changed := State(b.state.Load()) != from
	b.mu.Unlock()
	if changed {
		b.notify()
	}
}

// setLocked moves the breaker to state to at time now. b.mu must be held.
func (b *Breaker) setLocked(to State, now time.Time) {
	from := State(b.state.Load())
	switch {
	case to == Closed:
		b.openTime += nonNegative(now.Sub(b.trippedAt))
		b.consecutive, b.requests, b.failures, b.windowStart = 0, 0, 0, now
	case from == Closed:
		b.opens++
		b.trippedAt = now
	}
	if to != Closed {
		// Open: the first probe may go after OpenFor. HalfOpen: the probe
		// just went out; another may go if it has not reported by then.
		b.nextProbe.Store(int64(now.Sub(b.epoch) + b.o.OpenFor))
	}
	// Store nextProbe before state, so a lock-free reader that sees the new
	// state never pairs it with a stale deadline of the previous spell that
	// lies in the future.
	b.state.Store(int32(to))
	if b.o.OnChange != nil {
		b.pending = append(b.pending, change{from, to})
	}
}

// notify delivers pending transitions to OnChange, outside b.mu; whoever
// makes a transition calls it after unlocking. Only one goroutine delivers at
// a time, so calls are serialised and ordered; others leave their
// transitions in pending for it. The deliverer checks pending and clears
// notifying in one hold of b.mu, so no transition is left behind.
func (b *Breaker) notify() {
	if b.o.OnChange == nil {
		return
	}
	b.mu.Lock()
	if b.notifying {
		b.mu.Unlock()
		return
	}
	b.notifying = true
	// Runs with b.mu held, also if OnChange panics, so a panicking callback
	// does not stop later deliveries.
	defer func() {
		b.notifying = false
		b.mu.Unlock()
	}()
	for len(b.pending) > 0 {
		c := b.pending[0]
		b.pending = b.pending[1:]
		b.mu.Unlock()
		func() {
			defer b.mu.Lock()
			b.o.OnChange(c.from, c.to)
		}()
	}
}

// State returns the current state.
func (b *Breaker) State() State {
	return State(b.state.Load())
}

// Stats returns the breaker's counters.
func (b *Breaker) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{Opens: b.opens, Rejected: b.rejected.Load(), OpenTime: b.openTime}
	if State(b.state.Load()) != Closed {
		s.OpenTime += nonNegative(b.o.Now().Sub(b.trippedAt))
	}
	return s
}

// nonNegative guards the totals against a clock that steps backwards.
func nonNegative(d time.Duration) time.Duration {
	return max(d, 0)
}
