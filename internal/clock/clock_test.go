package clock

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestCoarseAdvances(t *testing.T) {
	c := NewCoarse(time.Millisecond)
	defer c.Stop()

	start := c.Now()
	deadline := time.Now().Add(time.Second)
	for c.Now() <= start {
		if time.Now().After(deadline) {
			t.Fatalf("Now stayed at %d for 1s with 1ms resolution", start)
		}
		time.Sleep(100 * time.Microsecond) // poll interval, not synchronisation
	}
}

func TestCoarseDefaultResolution(t *testing.T) {
	c := NewCoarse(0)
	defer c.Stop()
	start := c.Now()
	deadline := time.Now().Add(time.Second)
	for c.Now() <= start {
		if time.Now().After(deadline) {
			t.Fatal("clock with default resolution did not advance within 1s")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func TestCoarseMonotonic(t *testing.T) {
	c := NewCoarse(50 * time.Microsecond)
	defer c.Stop()

	// Readers check Now never goes back while others call Precise, which
	// races with the ticker's stores.
	var wg sync.WaitGroup
	errs := make(chan Time, 8)
	for g := 0; g < 4; g++ {
		precise := g%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := Time(-1)
			for i := 0; i < 50_000; i++ {
				var v Time
				if precise && i%8 == 0 {
					v = c.Precise()
				} else {
					v = c.Now()
				}
				if v < last {
					errs <- last - v
					return
				}
				last = v
			}
		}()
	}
	wg.Wait()
	close(errs)
	for back := range errs {
		t.Errorf("clock went back by %dns", back)
	}
}

func TestCoarsePreciseTracksRealTime(t *testing.T) {
	c := NewCoarse(time.Hour) // the ticker never fires during the test
	defer c.Stop()

	t0 := time.Now()
	p := c.Precise()
	t1 := time.Now()
	if got := c.Now(); got != p {
		t.Fatalf("Now = %d after Precise = %d, want equal", got, p)
	}
	for time.Since(t1) < 2*time.Millisecond {
		// let real time pass
	}
	t2 := time.Now()
	p2 := c.Precise()
	t3 := time.Now()
	// The two readings lie between the wall readings around them.
	if lo, hi := t2.Sub(t1), t3.Sub(t0); time.Duration(p2-p) < lo || time.Duration(p2-p) > hi {
		t.Fatalf("Precise advanced %v, real time between %v and %v", time.Duration(p2-p), lo, hi)
	}
}

func TestCoarseStop(t *testing.T) {
	c := NewCoarse(time.Millisecond)

	// Concurrent and repeated Stop must neither panic nor block.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Stop()
		}()
	}
	wg.Wait()
	c.Stop()
	goleak.VerifyNone(t)

	// Now is frozen; Precise still works and moves Now forward.
	frozen := c.Now()
	deadline := time.Now().Add(time.Second)
	for {
		p := c.Precise()
		if p > frozen {
			if c.Now() != p {
				t.Fatalf("Now = %d after Precise = %d", c.Now(), p)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Precise did not advance after Stop")
		}
	}
	if got := c.Now(); got < frozen {
		t.Fatalf("Now went back after Stop: %d < %d", got, frozen)
	}
}

func TestCoarseNowDoesNotAllocate(t *testing.T) {
	c := NewCoarse(time.Millisecond)
	defer c.Stop()
	if n := testing.AllocsPerRun(1000, func() { _ = c.Now() }); n != 0 {
		t.Fatalf("Now allocates %v times, want 0", n)
	}
}

func BenchmarkCoarseNow(b *testing.B) {
	c := NewCoarse(time.Millisecond)
	defer c.Stop()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = c.Now()
	}
}

func BenchmarkTimeNow(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = time.Now()
	}
}
