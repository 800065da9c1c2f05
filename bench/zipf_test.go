package bench

import (
	"math"
	"math/rand"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/cespare/xxhash/v2"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache/local"
)

// Scenario 2: a Zipf(s=1.01) workload over 1M keys with room for 100k, 90%
// reads and 10% writes, local tier only (a tiered miss would be a Redis
// round trip, which is not what this compares). A read miss fills the cache,
// as cache-aside does. hit-ratio is hits / reads over the timed operations.
// workloads_test.go adds a scan-heavy mix and loops.

const (
	zipfKeys     = 1_000_000
	zipfCapacity = 100_000
	zipfOps      = 1 << 21 // precomputed operations, replayed in a loop
)

type zipfOp struct {
	key   int32
	write bool
}

type zipfWorkload struct {
	keys []string
	ops  []zipfOp
}

var zipfFx lazy[*zipfWorkload]

func zipfWorkloadGet(b *testing.B) *zipfWorkload {
	return zipfFx.get(b, func() (*zipfWorkload, error) {
		w := &zipfWorkload{keys: ids("u", zipfKeys), ops: make([]zipfOp, zipfOps)}
		r := rand.New(rand.NewSource(42))
		z := rand.NewZipf(r, 1.01, 1, zipfKeys-1)
		for i := range w.ops {
			w.ops[i] = zipfOp{key: int32(z.Uint64()), write: r.Intn(10) == 0}
		}
		return w, nil
	})
}

// zipfCache is the part of each cache the workload uses.
type zipfCache interface {
	get(key string) (User, bool)
	set(key string, u User)
}

type localZipf struct{ c *local.Cache[User] }

func (l localZipf) get(k string) (User, bool) { return l.c.Get(xxhash.Sum64String(k), k, 0) }
func (l localZipf) set(k string, u User) {
	l.c.Set(xxhash.Sum64String(k), local.Entry[User]{Key: k, Value: u, Expire: math.MaxInt64})
}

type lruZipf struct{ c *lru.Cache[string, User] }

func (l lruZipf) get(k string) (User, bool) { return l.c.Get(k) }
func (l lruZipf) set(k string, u User)      { l.c.Add(k, u) }

type twoQZipf struct {
	c *lru.TwoQueueCache[string, User]
}

func (l twoQZipf) get(k string) (User, bool) { return l.c.Get(k) }
func (l twoQZipf) set(k string, u User)      { l.c.Add(k, u) }

type otterZipf struct{ c *otter.Cache[string, User] }

func (o otterZipf) get(k string) (User, bool) { return o.c.GetIfPresent(k) }
func (o otterZipf) set(k string, u User)      { o.c.Set(k, u) }

// zipfCache builds one cache of a row, empty, with room for capacity.
type zipfCacheRow struct {
	name string
	new  func(capacity int) zipfCache
}

var zipfCacheRows = [...]zipfCacheRow{
	{"tiercache", func(n int) zipfCache { // the default policy, TinyLFU
		return localZipf{local.New[User](local.Options{Capacity: n})}
	}},
	{"tiercache-LRU", func(n int) zipfCache {
		return localZipf{local.New[User](local.Options{Capacity: n, Policy: local.LRU})}
	}},
	{"golang-lru", func(n int) zipfCache {
		c, _ := lru.New[string, User](n)
		return lruZipf{c}
	}},
	{"golang-lru-2Q", func(n int) zipfCache {
		c, _ := lru.New2Q[string, User](n)
		return twoQZipf{c}
	}},
	{"otter", func(n int) zipfCache {
		c, err := otter.New(&otter.Options[string, User]{MaximumSize: n})
		if err != nil {
			panic(err)
		}
		return otterZipf{c}
	}},
}

// zipfStates keeps each row's warmed cache and replay position, per
// workload, across the calls go test makes of a benchmark function.
type zipfStates [len(zipfCacheRows)]lazy[*zipfState]

var zipfFxStates zipfStates

// BenchmarkZipf replays the workload on each cache, warmed by one full
// replay before the first timed run.
func BenchmarkZipf(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		for i, row := range zipfCacheRows {
			b.Run(mode+"/"+row.name, func(b *testing.B) {
				benchReplay(b, replayCase{w: zipfWorkloadGet(b), fx: &zipfFxStates[i], row: row, parallel: mode == "parallel"})
			})
		}
	}
}

// replayCase is one row of a replay benchmark.
type replayCase struct {
	w        *zipfWorkload
	fx       *lazy[*zipfState]
	row      zipfCacheRow
	parallel bool
	// wholeCycle reports as hit-ratio that of one whole replay after the
	// warm-up instead of that of the timed operations: for workloads whose
	// mix changes along the sequence (scans), b.N operations from wherever
	// the last run stopped would give each row a different mix.
	wholeCycle bool
}

// benchReplay times the replay of rc.w on rc.row's cache and reports
// hit-ratio.
func benchReplay(b *testing.B, rc replayCase) {
	w := rc.w
	st := rc.fx.get(b, func() (*zipfState, error) {
		c := rc.row.new(zipfCapacity)
		replay(w, c, 0, len(w.ops))
		st := &zipfState{c: c}
		if rc.wholeCycle {
			h, r := replay(w, c, 0, len(w.ops))
			st.cycleRatio = float64(h) / float64(max(r, 1))
		}
		return st, nil
	})
	c := st.c
	var hits, reads atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	if rc.parallel {
		// Goroutine g of P replays ops g, g+P, g+2P, ...: together
		// they replay the sequence in order, as one stream of
		// requests spread over P workers would.
		procs := runtime.GOMAXPROCS(0)
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			h, r := replayPB(w, c, st.pos+int(next.Add(1)-1), procs, pb)
			hits.Add(h)
			reads.Add(r)
		})
	} else {
		h, r := replay(w, c, st.pos, b.N)
		hits.Add(h)
		reads.Add(r)
	}
	b.StopTimer()
	st.pos = (st.pos + b.N) % len(w.ops)
	ratio := float64(hits.Load()) / float64(max(reads.Load(), 1))
	if rc.wholeCycle {
		ratio = st.cycleRatio
	}
	b.ReportMetric(ratio, "hit-ratio")
}

// zipfState is one cache and where its replay stands. Each run goes on
// where the last one stopped: restarting at op 0 would replay ops the cache
// saw a moment ago, which flatters policies that remember history (2Q's
// ghost list, otter's frequency sketch).
type zipfState struct {
	c          zipfCache
	pos        int
	cycleRatio float64 // with replayCase.wholeCycle
}

var zipfUser = newUser(1)

// replay runs n operations starting at ops[start], wrapping around.
func replay(w *zipfWorkload, c zipfCache, start, n int) (hits, reads int64) {
	j := start % len(w.ops)
	for i := 0; i < n; i++ {
		h, r := step(w, c, j)
		hits += h
		reads += r
		if j++; j == len(w.ops) {
			j = 0
		}
	}
	return hits, reads
}

func replayPB(w *zipfWorkload, c zipfCache, start, stride int, pb *testing.PB) (hits, reads int64) {
	j := start % len(w.ops)
	for pb.Next() {
		h, r := step(w, c, j)
		hits += h
		reads += r
		if j += stride; j >= len(w.ops) {
			j -= len(w.ops)
		}
	}
	return hits, reads
}

func step(w *zipfWorkload, c zipfCache, j int) (hit, read int64) {
	op := w.ops[j]
	k := w.keys[op.key]
	if op.write {
		c.set(k, zipfUser)
		return 0, 0
	}
	if _, ok := c.get(k); ok {
		return 1, 1
	}
	c.set(k, zipfUser) // cache-aside fill after a miss
	return 0, 1
}
