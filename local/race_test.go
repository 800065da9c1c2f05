package local

import (
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// raceValue is what the hammer tests store: the key it was written for and
// a payload that must never change once a reader holds it.
type raceValue struct {
	key     string
	payload [4]uint64
}

func newRaceValue(key string, seq uint64) raceValue {
	return raceValue{key: key, payload: [4]uint64{seq, seq * 3, seq * 5, seq * 7}}
}

func (v *raceValue) intact() bool {
	s := v.payload[0]
	return v.payload == [4]uint64{s, s * 3, s * 5, s * 7}
}

// Readers (Ref and Get) run against every writer: fills, Sets, Replaces,
// Deletes, Purges, and enough churn to rebuild the index tables and grow
// the read stripes, on keys forced onto fewer hashes so that collisions
// race too. Every hit must return a value written for its key, which must
// stay intact while held; Len and Bytes must never exceed their bounds;
// the counters must add up; and at rest the structures must agree.
func TestHammerReadsAgainstWrites(t *testing.T) {
	for _, pc := range policies {
		for _, bounded := range []bool{false, true} {
			name := pc.name
			if bounded {
				name += "/MaxBytes"
			}
			t.Run(name, func(t *testing.T) { hammer(t, pc.p, bounded) })
		}
	}
}

func hammer(t *testing.T, p Policy, bounded bool) {
	const (
		readers  = 6
		writers  = 3
		keys     = 2000
		capacity = 500
		ops      = 20_000
	)
	o := Options{Capacity: capacity, Shards: 4, Policy: p}
	if bounded {
		o.MaxBytes = 300 * 200
	}
	c := New[raceValue](o)
	hash := func(n int) uint64 { return hashOf(strconv.Itoa(n % 1500)) } // 2000 keys on 1500 hashes
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		reads   atomic.Int64
		seq     atomic.Uint64
		clock   atomic.Int64 // the callers' clock: advanced by the writers
		failure atomic.Pointer[string]
	)
	fail := func(msg string) { failure.CompareAndSwap(nil, &msg); stop.Store(true) }
	for w := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(w)))
			var held []*raceValue
			for i := 0; i < ops && !stop.Load(); i++ {
				n := r.Intn(keys)
				k := "k" + strconv.Itoa(n)
				reads.Add(1)
				v := c.Ref(hash(n), k, clock.Load())
				if v == nil {
					continue
				}
				if v.key != k || !v.intact() {
					fail("Ref(" + k + ") returned a value of " + v.key)
					return
				}
				if held = append(held, v); len(held) == 64 {
					for _, v := range held {
						if !v.intact() {
							fail("a held value changed")
							return
						}
					}
					held = held[:0]
				}
			}
		}()
	}
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(100 + w)))
			for i := 0; i < ops && !stop.Load(); i++ {
				n := r.Intn(keys)
				k, h := "k"+strconv.Itoa(n), hash(n)
				now := clock.Add(1)
				e := Entry[raceValue]{Key: k, Value: newRaceValue(k, seq.Add(1)), Expire: now + int64(r.Intn(20_000)), Size: int64(r.Intn(400))}
				switch r.Intn(20) {
				case 0:
					if r.Intn(100) == 0 {
						c.Purge()
					}
				case 1, 2, 3:
					c.Delete(h, k)
				case 4, 5:
					c.Replace(h, e, c.Token(h))
				case 6, 7, 8:
					c.Set(h, e)
				default:
					c.SetIfUnchanged(h, e, c.Token(h))
				}
				if c.Len() > capacity || (bounded && c.Bytes() > o.MaxBytes) {
					fail("bounds exceeded: Len " + strconv.Itoa(c.Len()) + ", Bytes " + strconv.FormatInt(c.Bytes(), 10))
					return
				}
				if i%500 == 0 {
					c.Stats()
				}
			}
		}()
	}
	wg.Wait()
	if f := failure.Load(); f != nil {
		t.Fatal(*f)
	}
	s := c.Stats()
	if s.Hits+s.Misses != uint64(reads.Load()) {
		t.Fatalf("Hits+Misses = %d, want %d reads", s.Hits+s.Misses, reads.Load())
	}
	// Refused needs a write to land between a Token and its fill, which a
	// fast run may not see: TestSetIfUnchanged forces it.
	if s.Hits == 0 || s.Collisions == 0 || s.Evictions == 0 || s.Expired == 0 {
		t.Fatalf("the hammer exercised too little: %+v", s)
	}
	checkInvariants(t, c)
	t.Logf("%+v, stripes %d", s, len(c.shards[0].reads.Load().s))
}

// Many goroutines reading one key contend for one shard's stripe: the
// shard adds stripes (or re-salts), and every hit is still counted.
func TestHotKeyReadersCountExactly(t *testing.T) {
	c := New[string](Options{Capacity: 64, Shards: 1})
	h := hashOf("hot")
	c.Set(h, ent("hot", "v", never))
	const goroutines, each = 8, 20_000
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if v := c.Ref(h, "hot", 0); v == nil || *v != "v" {
					panic("hot key missed")
				}
			}
		}()
	}
	wg.Wait()
	if s := c.Stats(); s.Hits != goroutines*each || s.Misses != 0 {
		t.Fatalf("Hits = %d, Misses = %d; want %d, 0", s.Hits, s.Misses, goroutines*each)
	}
	checkInvariants(t, c)
}

// A hit recorded in a read buffer whose node is then deleted, replaced or
// purged is skipped by the drain: the policy never sees a node it dropped.
func TestDrainSkipsNodesGoneSinceTheirHit(t *testing.T) {
	for _, pc := range policies {
		t.Run(pc.name, func(t *testing.T) {
			c := New[string](Options{Capacity: 64, Shards: 1, Policy: pc.p})
			for i := range 40 {
				k := "k" + strconv.Itoa(i)
				c.Set(hashOf(k), ent(k, k, never))
			}
			for i := range 40 {
				k := "k" + strconv.Itoa(i)
				c.Get(hashOf(k), k, 0)
			}
			for i := range 40 {
				k := "k" + strconv.Itoa(i)
				switch i % 3 {
				case 0:
					c.Delete(hashOf(k), k)
				case 1:
					c.Set(hashOf(k), ent(k, k+"'", never))
				}
			}
			sh := &c.shards[0]
			sh.mu.Lock()
			for _, st := range sh.reads.Load().s {
				st.drained = 0 // replay the whole ring
			}
			sh.drainReads()
			sh.mu.Unlock()
			checkInvariants(t, c)
			c.Purge()
			sh.mu.Lock()
			for _, st := range sh.reads.Load().s {
				st.drained = 0
			}
			sh.drainReads()
			sh.mu.Unlock()
			checkInvariants(t, c)
			if c.Len() != 0 {
				t.Fatalf("Len = %d after Purge", c.Len())
			}
		})
	}
}

// Contention recorded on a stripe makes the next drain add stripes, and at
// the maximum re-salt; the stripes, and their hits, are kept.
func TestStripesGrowThenResalt(t *testing.T) {
	ss := newStripes[int]()
	ss.s[0].hits.Store(7)
	for len(ss.s) < maxStripes {
		ss.s[0].contended.Store(contendedAfter)
		next := ss.grown()
		if next == nil || len(next.s) != 2*len(ss.s) || next.s[0] != ss.s[0] || next.mask != uint64(len(next.s)-1) {
			t.Fatalf("grown from %d stripes: %+v", len(ss.s), next)
		}
		ss = next
	}
	if ss.grown() != nil {
		t.Fatal("grew without contention")
	}
	ss.s[len(ss.s)-1].contended.Store(contendedAfter)
	next := ss.grown()
	if next == nil || len(next.s) != len(ss.s) || next.salt == ss.salt {
		t.Fatalf("at the maximum: %+v, want the same stripes with a new salt", next)
	}
	if hits, _, _ := next.counts(); hits != 7 {
		t.Fatalf("hits = %d after growing, want 7", hits)
	}
}
