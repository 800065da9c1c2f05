package bench

import (
	"context"
	"fmt"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/maypok86/otter/v2"

	"github.com/tiercache/tiercache/tiered"
)

// Scenario 1b: a working set of exactly LocalCapacity ids (100k, capacity
// 100k, default shards) read in a loop, in order, through Keyspace.Get.
// Everything fits, so every read should be a local hit; a local miss is a
// Redis round trip, and local-miss/op shows how many there were. The peers
// hold the same ids with the same capacity.

const workingSet = 100_000

type workingSetFixture struct {
	ids   []string
	c     *tiered.Client
	ks    *tiered.Keyspace[User]
	lru   *lru.Cache[string, User]
	otter *otter.Cache[string, User]
}

var workingSetFx lazy[*workingSetFixture]

func buildWorkingSet() (*workingSetFixture, error) {
	f := &workingSetFixture{ids: ids("w", workingSet)}
	var err error
	if f.c, err = newTiered(); err != nil {
		return nil, err
	}
	f.ks, err = tiered.NewKeyspace(f.c, tiered.Config[User]{
		Name: "workingset", TTL: hourTTL, LocalTTL: hourTTL, LocalCapacity: workingSet,
		Loader:      func(_ context.Context, id string) (User, error) { return newUser(idNum(id)), nil },
		BatchLoader: loadUsers,
	})
	if err != nil {
		return nil, err
	}
	for i := 0; i < workingSet; i += 1000 {
		if got, err := f.ks.GetMany(ctx, f.ids[i:i+1000]); err != nil || len(got) != 1000 {
			return nil, fmt.Errorf("warm tiered: %d values, %v", len(got), err)
		}
	}
	f.lru, _ = lru.New[string, User](workingSet)
	if f.otter, err = otter.New(&otter.Options[string, User]{MaximumSize: workingSet}); err != nil {
		return nil, err
	}
	for i, id := range f.ids {
		f.lru.Add(id, newUser(i))
		f.otter.Set(id, newUser(i))
	}
	return f, nil
}

func BenchmarkWorkingSet(b *testing.B) {
	b.Run("tiercache", func(b *testing.B) {
		f := workingSetFx.get(b, buildWorkingSet)
		var before tiered.Stats
		runReads(b, f.ids, false, func() { before = f.ks.Stats() }, func(id string) int64 {
			u, err := f.ks.Get(ctx, id)
			if err != nil {
				panic(err)
			}
			return u.ID
		})
		b.StopTimer()
		st := f.ks.Stats()
		b.ReportMetric(float64(st.LocalMisses-before.LocalMisses)/float64(b.N), "local-miss/op")
		b.ReportMetric(float64(st.LocalEntries), "local-entries")
	})
	b.Run("golang-lru", func(b *testing.B) {
		f := workingSetFx.get(b, buildWorkingSet)
		runReads(b, f.ids, false, nil, func(id string) int64 {
			u, _ := f.lru.Get(id)
			return u.ID
		})
	})
	b.Run("otter", func(b *testing.B) {
		f := workingSetFx.get(b, buildWorkingSet)
		runReads(b, f.ids, false, nil, func(id string) int64 {
			u, _ := f.otter.GetIfPresent(id)
			return u.ID
		})
	})
}
