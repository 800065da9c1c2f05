package local

import "testing"

func TestSketchCountsSaturatesAndAges(t *testing.T) {
	var s sketch
	s.init(7)
	const h = 0xabcdef
	if f := s.frequency(h); f != 0 {
		t.Fatalf("frequency of an unseen hash = %d", f)
	}
	for i := 1; i <= 20; i++ {
		s.increment(h)
		if f, want := s.frequency(h), uint64(min(i, counterMax)); f != want {
			t.Fatalf("after %d increments frequency = %d, want %d", i, f, want)
		}
	}
	s.age()
	if f := s.frequency(h); f != counterMax/2 {
		t.Fatalf("after aging frequency = %d, want %d", f, counterMax/2)
	}
	// Aging also happens by itself after period increments.
	var a sketch
	a.init(7)
	for range 8 {
		a.increment(h)
	}
	for i := uint64(0); ; i++ {
		before := a.samples
		a.increment(uint64(1)<<40 + i)
		if a.samples < before {
			break // aged
		}
		if i > uint64(2*a.period) {
			t.Fatal("no aging after twice the period")
		}
	}
	if f := a.frequency(h); f > 4 {
		t.Fatalf("frequency %d after aging, want at most 4", f)
	}
}

func TestSketchGrowthKeepsCounts(t *testing.T) {
	var s sketch
	s.init(3)
	want := map[uint64]uint64{}
	for k := uint64(1); k <= 40; k++ {
		for range k % 9 {
			s.increment(k * 0x9E3779B97F4A7C15)
		}
		want[k*0x9E3779B97F4A7C15] = s.frequency(k * 0x9E3779B97F4A7C15)
	}
	s.ensure(1000)
	if s.sized < 1000 || len(s.table) != s.sized || s.blocks*8 != uint64(len(s.table)) {
		t.Fatalf("sized %d, %d words, %d blocks", s.sized, len(s.table), s.blocks)
	}
	for h, f := range want {
		if got := s.frequency(h); got != f {
			t.Fatalf("frequency %d after growth, %d before", got, f)
		}
	}
}

// Conservative update: a key incremented often does not raise the estimate
// of a key that shares only some of its counters.
func TestSketchEstimatesStayLow(t *testing.T) {
	var s sketch
	s.init(11)
	s.ensure(4096)
	for k := uint64(0); k < 4096; k++ {
		s.increment(k * 0x9E3779B97F4A7C15)
	}
	over := 0
	for k := uint64(0); k < 4096; k++ {
		if s.frequency(k*0x9E3779B97F4A7C15) > 1 {
			over++
		}
	}
	if over > 4096/20 {
		t.Fatalf("%d of 4096 keys seen once estimate more than 1", over)
	}
}
