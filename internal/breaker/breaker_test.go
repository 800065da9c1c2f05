package breaker

import (
	"math"
	"math/rand"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand. step, if set, advances it on
// every read so that concurrent tests see time pass without sleeping.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	step  time.Duration
	reads int
}

func newClock() *fakeClock { return &fakeClock{t: time.Unix(1700000000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	c.t = c.t.Add(c.step)
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *fakeClock) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

const openFor = time.Second

func newBreaker(t *testing.T, c *fakeClock, o Options) *Breaker {
	t.Helper()
	o.Now = c.Now
	if o.OpenFor == 0 {
		o.OpenFor = openFor
	}
	return New(o)
}

// report feeds outcomes through Allow/Done, as a caller would.
func report(t *testing.T, b *Breaker, outcomes ...bool) {
	t.Helper()
	for i, failed := range outcomes {
		if !b.Allow() {
			t.Fatalf("outcome %d: Allow = false in state %v", i, b.State())
		}
		b.Done(failed)
	}
}

func repeat(failed bool, n int) []bool {
	s := make([]bool, n)
	for i := range s {
		s[i] = failed
	}
	return s
}

func wantState(t *testing.T, b *Breaker, want State) {
	t.Helper()
	if got := b.State(); got != want {
		t.Fatalf("State = %v, want %v", got, want)
	}
}

// trip opens b with consecutive failures.
func trip(t *testing.T, b *Breaker) {
	t.Helper()
	report(t, b, repeat(true, 5)...)
	wantState(t, b, Open)
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{Closed: "closed", Open: "open", HalfOpen: "half-open", 7: "State(7)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int32(s), got, want)
		}
	}
}

func TestDefaultsForBadOptions(t *testing.T) {
	o := Options{ConsecutiveFailures: -1, FailureRatio: math.NaN(), MinRequests: -3, Window: -time.Second, OpenFor: -1}.withDefaults()
	want := Options{ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20, Window: 10 * time.Second, OpenFor: time.Second}
	o.Now = nil
	if !reflect.DeepEqual(o, want) {
		t.Fatalf("withDefaults = %+v, want %+v", o, want)
	}
	b := New(Options{}) // real clock; must not panic and must start closed
	wantState(t, b, Closed)
	if !b.Allow() {
		t.Fatal("new breaker refused a call")
	}
}

func TestOpensAfterConsecutiveFailures(t *testing.T) {
	b := newBreaker(t, newClock(), Options{ConsecutiveFailures: 5})
	report(t, b, repeat(true, 4)...)
	report(t, b, false) // breaks the run
	report(t, b, repeat(true, 4)...)
	wantState(t, b, Closed)
	report(t, b, true)
	wantState(t, b, Open)
	if s := b.Stats(); s.Opens != 1 {
		t.Fatalf("Opens = %d, want 1", s.Opens)
	}
}

func TestOpensOnRatio(t *testing.T) {
	b := newBreaker(t, newClock(), Options{})
	// 20 requests, 10 failures interleaved: never two failures in a row.
	for i := 0; i < 20; i++ {
		wantState(t, b, Closed)
		report(t, b, i%2 == 1)
	}
	wantState(t, b, Open)
}

func TestRatioBelowThresholdStaysClosed(t *testing.T) {
	b := newBreaker(t, newClock(), Options{})
	// 9 failures in every 20 (45%), never two in a row, in one window.
	for i := 0; i < 200; i++ {
		report(t, b, i%2 == 1 && i%20 < 18)
	}
	wantState(t, b, Closed)
}

func TestWindowResetsRatioCounts(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{Window: 10 * time.Second})
	// 19 requests, 10 failures: one more failure would open it (see
	// TestOpensOnRatio) ...
	for i := 0; i < 19; i++ {
		report(t, b, i%2 == 0)
	}
	wantState(t, b, Closed)
	// ... but not after the window has passed: the counts start again.
	c.Advance(10 * time.Second)
	for i := 0; i < 19; i++ {
		report(t, b, i%2 == 0)
	}
	wantState(t, b, Closed)
	// The new window is now as full as the old one was; it does open.
	report(t, b, true)
	wantState(t, b, Open)
}

func TestAllowFalseWhileOpen(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	trip(t, b)
	for i := 0; i < 10; i++ {
		if b.Allow() {
			t.Fatalf("Allow = true right after opening (call %d)", i)
		}
	}
	c.Advance(openFor - time.Nanosecond)
	if b.Allow() {
		t.Fatal("Allow = true before OpenFor has passed")
	}
	if s := b.Stats(); s.Rejected != 11 {
		t.Fatalf("Rejected = %d, want 11", s.Rejected)
	}
	wantState(t, b, Open)
}

func TestReportsWhileOpenIgnored(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	trip(t, b)
	c.Advance(openFor / 2)
	b.Done(false) // calls let through before it opened
	b.Done(true)
	wantState(t, b, Open)
	c.Advance(openFor / 2) // OpenFor counts from opening, not from the late failure
	if !b.Allow() {
		t.Fatal("no probe after OpenFor")
	}
}

func TestOneProbeAmongConcurrentCallers(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	trip(t, b)
	c.Advance(openFor)

	const n = 50
	var allowed atomic.Int32
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if b.Allow() {
				allowed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if got := allowed.Load(); got != 1 {
		t.Fatalf("%d callers allowed, want exactly 1 probe", got)
	}
	wantState(t, b, HalfOpen)
	if s := b.Stats(); s.Rejected != n-1 {
		t.Fatalf("Rejected = %d, want %d", s.Rejected, n-1)
	}
}

func TestProbeSuccessCloses(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	trip(t, b)
	c.Advance(openFor)
	if !b.Allow() {
		t.Fatal("no probe after OpenFor")
	}
	b.Done(false)
	wantState(t, b, Closed)
	// Counts were reset: the failures that opened it do not carry over.
	report(t, b, repeat(true, 4)...)
	wantState(t, b, Closed)
	report(t, b, true)
	wantState(t, b, Open)
}

func TestProbeFailureReopens(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	trip(t, b)
	c.Advance(openFor)
	if !b.Allow() {
		t.Fatal("no probe after OpenFor")
	}
	c.Advance(300 * time.Millisecond) // the probe takes a while to fail
	b.Done(true)
	wantState(t, b, Open)
	// OpenFor restarts when the probe failed.
	c.Advance(openFor - time.Nanosecond)
	if b.Allow() {
		t.Fatal("Allow = true before OpenFor has passed since the probe failed")
	}
	c.Advance(time.Nanosecond)
	if !b.Allow() {
		t.Fatal("no second probe after OpenFor")
	}
	if b.Allow() {
		t.Fatal("two probes at once")
	}
	if s := b.Stats(); s.Opens != 1 {
		t.Fatalf("Opens = %d, want 1 (a failed probe is not a new opening)", s.Opens)
	}
}

func TestLostProbeReplaced(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	trip(t, b)
	c.Advance(openFor)
	if !b.Allow() {
		t.Fatal("no probe after OpenFor")
	}
	// The probe never reports.
	c.Advance(openFor - time.Nanosecond)
	if b.Allow() {
		t.Fatal("second probe before OpenFor has passed since the first")
	}
	c.Advance(time.Nanosecond)
	if !b.Allow() {
		t.Fatal("lost probe not replaced after OpenFor")
	}
	if b.Allow() {
		t.Fatal("replacement probe let more than one caller through")
	}
	wantState(t, b, HalfOpen)
	b.Done(false)
	wantState(t, b, Closed)
}

func TestOnChangeSequence(t *testing.T) {
	c := newClock()
	var got []change
	var b *Breaker
	b = newBreaker(t, c, Options{OnChange: func(from, to State) {
		_ = b.Stats() // takes the lock: proves OnChange runs outside it
		got = append(got, change{from, to})
	}})
	trip(t, b)
	c.Advance(openFor)
	report(t, b, false) // probe succeeds
	want := []change{{Closed, Open}, {Open, HalfOpen}, {HalfOpen, Closed}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("OnChange calls = %v, want %v", got, want)
	}
}

func TestOnChangeMayCallBack(t *testing.T) {
	c := newClock()
	var got []change
	var b *Breaker
	b = newBreaker(t, c, Options{OnChange: func(from, to State) {
		got = append(got, change{from, to})
		if to == HalfOpen {
			b.Done(true) // a transition from inside OnChange: delivered after this call
		}
	}})
	trip(t, b)
	c.Advance(openFor)
	if !b.Allow() {
		t.Fatal("no probe after OpenFor")
	}
	want := []change{{Closed, Open}, {Open, HalfOpen}, {HalfOpen, Open}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("OnChange calls = %v, want %v", got, want)
	}
}

func TestStatsOpenTime(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	c.Advance(5 * time.Second) // closed time does not count
	trip(t, b)
	c.Advance(3 * time.Second)
	if got := b.Stats().OpenTime; got != 3*time.Second {
		t.Fatalf("OpenTime while open = %v, want 3s", got)
	}
	if !b.Allow() { // half-open counts too
		t.Fatal("no probe after OpenFor")
	}
	c.Advance(500 * time.Millisecond)
	b.Done(false)
	c.Advance(time.Minute)
	if got := b.Stats().OpenTime; got != 3500*time.Millisecond {
		t.Fatalf("OpenTime after closing = %v, want 3.5s", got)
	}
	trip(t, b)
	c.Advance(2 * time.Second)
	s := b.Stats()
	if s.OpenTime != 5500*time.Millisecond || s.Opens != 2 {
		t.Fatalf("Stats = %+v, want OpenTime 5.5s and Opens 2", s)
	}
}

func TestAllowClosedNoAllocNoClock(t *testing.T) {
	c := newClock()
	b := newBreaker(t, c, Options{})
	reads := c.Reads()
	if n := testing.AllocsPerRun(1000, func() {
		if !b.Allow() {
			t.Fatal("closed breaker refused a call")
		}
	}); n != 0 {
		t.Fatalf("Allow while closed: %v allocs, want 0", n)
	}
	if got := c.Reads(); got != reads {
		t.Fatalf("Allow while closed read the clock %d times", got-reads)
	}
}

// TestConcurrent hammers Allow/Done from many goroutines while the clock
// moves, so the breaker cycles through every state; run with -race. OnChange
// must see an unbroken, non-overlapping chain of transitions.
func TestConcurrent(t *testing.T) {
	c := newClock()
	c.step = time.Millisecond
	var (
		mu     sync.Mutex
		got    []change
		inside atomic.Int32
	)
	b := newBreaker(t, c, Options{OpenFor: 20 * time.Millisecond, Window: 100 * time.Millisecond, OnChange: func(from, to State) {
		if inside.Add(1) != 1 {
			t.Error("OnChange calls overlap")
		}
		mu.Lock()
		got = append(got, change{from, to})
		mu.Unlock()
		inside.Add(-1)
	}})

	const workers, calls = 32, 2000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		seed := int64(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			for i := 0; i < calls; i++ {
				if b.Allow() {
					// Fail often in bursts, and sometimes lose the report.
					if r.Intn(50) != 0 {
						b.Done(i/200%2 == 0 && r.Intn(3) != 0)
					}
				}
				_ = b.State()
				if i%100 == 0 {
					_ = b.Stats()
				}
			}
		}()
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(got) < 3 {
		t.Fatalf("only %d transitions; the test did not exercise the breaker", len(got))
	}
	prev := Closed
	for i, ch := range got {
		if ch.from != prev || ch.from == ch.to {
			t.Fatalf("transition %d is %v->%v after ending in %v", i, ch.from, ch.to, prev)
		}
		prev = ch.to
	}
	if prev != b.State() {
		t.Fatalf("last transition ends in %v, State = %v", prev, b.State())
	}
	s := b.Stats()
	var opens uint64
	for _, ch := range got {
		if ch.from == Closed {
			opens++
		}
	}
	if s.Opens != opens || s.Rejected == 0 {
		t.Fatalf("Stats = %+v, want Opens %d and some rejections", s, opens)
	}
}

func BenchmarkAllowClosed(b *testing.B) {
	br := New(Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			br.Allow()
		}
	})
}
