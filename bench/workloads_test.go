package bench

import (
	"math/rand"
	"strconv"
	"testing"
)

// Scenario 2b: the hit ratio of the local tier on workloads that defeat
// recency alone, replayed as BenchmarkZipf replays its own (a fill after
// every read miss), serially. hit-ratio is that of one whole replay after
// the warm-up (the timed runs start wherever the last one stopped, which
// for a scan mix would give each row a different share of scans), and
// counts every read, scans included.
//
//	scan       the Zipf workload of BenchmarkZipf, interrupted after every
//	           200k operations by a one-pass scan of 100k cold keys (each
//	           read once, never again)
//	loop-150k  150k ids read in order, over and over, with room for 100k:
//	           LRU always evicts the id needed next and never hits
//	loop-100k  exactly capacity (100k) ids read in order: everything fits,
//	           so every read after the first pass should hit

type hitWorkload struct {
	name  string
	build func() *zipfWorkload
	fx    zipfStates
}

var hitWorkloads = []*hitWorkload{
	{name: "scan", build: scanWorkload},
	{name: "loop-150k", build: func() *zipfWorkload { return loopWorkload(150_000) }},
	{name: "loop-100k", build: func() *zipfWorkload { return loopWorkload(zipfCapacity) }},
}

func BenchmarkHitRatio(b *testing.B) {
	for _, wl := range hitWorkloads {
		var w lazy[*zipfWorkload]
		for i, row := range zipfCacheRows {
			b.Run(wl.name+"/"+row.name, func(b *testing.B) {
				ops := w.get(b, func() (*zipfWorkload, error) { return wl.build(), nil })
				benchReplay(b, replayCase{w: ops, fx: &wl.fx[i], row: row, wholeCycle: true})
			})
		}
	}
}

const (
	scanEvery = 200_000 // Zipf operations between scans
	scanLen   = 100_000 // cold keys per scan
)

// scanWorkload is the Zipf workload's keys and operation mix, with a scan
// of fresh cold keys (ids "c0", "c1", ...) after every scanEvery operations.
func scanWorkload() *zipfWorkload {
	w := &zipfWorkload{keys: ids("u", zipfKeys), ops: make([]zipfOp, 0, zipfOps)}
	r := rand.New(rand.NewSource(42))
	z := rand.NewZipf(r, 1.01, 1, zipfKeys-1)
	for len(w.ops) < zipfOps {
		for range scanEvery {
			w.ops = append(w.ops, zipfOp{key: int32(z.Uint64()), write: r.Intn(10) == 0})
		}
		for range scanLen {
			w.ops = append(w.ops, zipfOp{key: int32(len(w.keys))})
			w.keys = append(w.keys, "c"+strconv.Itoa(len(w.keys)-zipfKeys))
		}
	}
	return w
}

// loopWorkload reads ids 0..n-1 in order, as many whole passes as fit in
// zipfOps operations (so that the replay wraps at a pass boundary).
func loopWorkload(n int) *zipfWorkload {
	w := &zipfWorkload{keys: ids("u", n), ops: make([]zipfOp, zipfOps/n*n)}
	for i := range w.ops {
		w.ops[i] = zipfOp{key: int32(i % n)}
	}
	return w
}
