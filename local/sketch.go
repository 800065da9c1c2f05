package local

// sketch is a count-min sketch of 4-bit counters that estimates how often
// each hash was recorded recently (the frequency half of W-TinyLFU).
//
// The table is made of 64-byte blocks of eight words; a hash picks one
// block, and in it one counter in each of four rows (two words, 32 counters
// per row), so an increment or an estimate touches one cache line. The
// estimate is the smallest of the four counters. Increments are
// conservative: only the counters equal to that minimum grow, which keeps
// collisions from inflating the other keys' estimates. Counters saturate at
// 15, which is plenty to tell hot from cold.
//
// Aging: after period increments, every counter halves, so the sketch
// follows a workload that changes instead of remembering an old hot set
// forever. period is ten times the number of keys the table is sized for.
//
// Not safe for concurrent use: the shard lock guards it.
type sketch struct {
	table   []uint64
	blocks  uint64 // len(table)/8, a power of two
	sized   int    // the key count the table is sized for
	samples int
	period  int
	seed    uint64
	sink    uint64 // keeps prefetch's loads from being optimised away
}

const (
	minSketchKeys = 64
	counterMax    = 15
	halfMask      = 0x7777777777777777
)

func (s *sketch) init(seed uint64) {
	s.seed = seed
	s.table = make([]uint64, minSketchKeys) // one word per key
	s.blocks = minSketchKeys / 8
	s.sized = minSketchKeys
	s.period = 10 * minSketchKeys
}

// ensure sizes the table for at least keys keys, doubling it as the shard
// grows. Doubling keeps every count: a hash's block in the doubled table is
// its old block or the old block plus the old block count, and both start
// as copies of the old block.
func (s *sketch) ensure(keys int) {
	for keys > s.sized {
		t := make([]uint64, 2*len(s.table))
		copy(t, s.table)
		copy(t[len(s.table):], s.table)
		s.table = t
		s.blocks *= 2
		s.sized *= 2
		s.period *= 2
	}
}

// spread mixes h with the seed; its low bits pick the block, its high bits
// the counters.
func (s *sketch) spread(h uint64) uint64 {
	x := h ^ s.seed
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// prefetch loads h's block, so that a later increment finds it in cache.
func (s *sketch) prefetch(h uint64) {
	s.sink += s.table[(s.spread(h)&(s.blocks-1))<<3]
}

// counters returns the word index and bit offset of h's four counters.
func (s *sketch) counters(h uint64) (word [4]uint64, shift [4]uint) {
	x := s.spread(h)
	block := (x & (s.blocks - 1)) << 3
	for i := range 4 {
		y := x >> (32 + 8*i)
		word[i] = block + uint64(2*i) + y&1
		shift[i] = uint((y>>1)&15) << 2
	}
	return word, shift
}

// frequency estimates how often h was recorded, 0 to 15.
func (s *sketch) frequency(h uint64) uint64 {
	word, shift := s.counters(h)
	f := uint64(counterMax)
	for i := range 4 {
		f = min(f, s.table[word[i]]>>shift[i]&counterMax)
	}
	return f
}

// increment records one occurrence of h.
func (s *sketch) increment(h uint64) {
	word, shift := s.counters(h)
	f := uint64(counterMax)
	for i := range 4 {
		f = min(f, s.table[word[i]]>>shift[i]&counterMax)
	}
	if f == counterMax {
		return
	}
	for i := range 4 {
		if s.table[word[i]]>>shift[i]&counterMax == f {
			s.table[word[i]] += 1 << shift[i]
		}
	}
	if s.samples++; s.samples >= s.period {
		s.age()
	}
}

// age halves every counter.
func (s *sketch) age() {
	for i, w := range s.table {
		s.table[i] = w >> 1 & halfMask
	}
	s.samples /= 2
}
