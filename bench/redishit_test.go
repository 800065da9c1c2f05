package bench

import (
	"encoding/json"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/tiered"
)

// Scenarios 3 and 4: reads that the local tier cannot serve and Redis can.
// tiercache's keyspaces here hold one local entry (LocalCapacity 1) while
// the benchmark cycles over many keys, so every Get misses locally, reads
// Redis and decodes, as a cold process would; the redis-hits/op metric shows
// it. The peers read the same JSON with go-redis and decode it the same way.

const (
	remoteKeys  = 256 // cycled by Get; more than goroutines, so no coalescing
	batchSize   = 100
	batchCount  = 8 // GetMany batches cycled; each is 100 distinct keys
	remoteBatch = batchSize * batchCount
)

type remoteFixture struct {
	c        *tiered.Client
	rdb      *redis.Client
	small    *tiered.Keyspace[User]
	large    *tiered.Keyspace[User]
	batch    *tiered.Keyspace[User]
	ids      []string            // ids of small, large
	rawKeys  map[string][]string // "100B", "10KB" -> raw Redis keys
	batches  [][]string          // ids of batch, batchCount x batchSize
	rawBatch [][]string          // raw Redis keys of the same users
	sizes    map[string][2]int   // JSON bytes of one value: min, max
	spaces   map[string]*tiered.Keyspace[User]
}

var remoteFx lazy[*remoteFixture]

func remoteFixtureGet(b *testing.B) *remoteFixture {
	return remoteFx.get(b, buildRemoteFixture)
}

func buildRemoteFixture() (*remoteFixture, error) {
	f := &remoteFixture{ids: ids("u", remoteKeys), rawKeys: map[string][]string{}, sizes: map[string][2]int{}}
	var err error
	if f.c, err = newTiered(); err != nil {
		return nil, err
	}
	f.rdb = newRedis()
	mk := func(name string) (*tiered.Keyspace[User], error) {
		return tiered.NewKeyspace(f.c, tiered.Config[User]{Name: name, TTL: hourTTL, LocalTTL: hourTTL, LocalCapacity: 1})
	}
	if f.small, err = mk("small"); err != nil {
		return nil, err
	}
	if f.large, err = mk("large"); err != nil {
		return nil, err
	}
	if f.batch, err = mk("batch"); err != nil {
		return nil, err
	}
	f.spaces = map[string]*tiered.Keyspace[User]{"100B": f.small, "10KB": f.large}
	for size, ks := range f.spaces {
		gen := newUser
		if size == "10KB" {
			gen = newLargeUser
		}
		mn, mx := 1<<30, 0
		for i, id := range f.ids {
			u := gen(i)
			if err := ks.Set(ctx, id, u); err != nil {
				return nil, err
			}
			js, _ := json.Marshal(u)
			mn, mx = min(mn, len(js)), max(mx, len(js))
			key := "raw:" + size + ":" + id
			if err := f.rdb.Set(ctx, key, js, hourTTL).Err(); err != nil {
				return nil, err
			}
			f.rawKeys[size] = append(f.rawKeys[size], key)
		}
		f.sizes[size] = [2]int{mn, mx}
	}
	all := ids("b", remoteBatch)
	for i := 0; i < batchCount; i++ {
		f.batches = append(f.batches, all[i*batchSize:(i+1)*batchSize])
		raw := make([]string, batchSize)
		for j, id := range f.batches[i] {
			u := newUser(i*batchSize + j)
			if err := f.batch.Set(ctx, id, u); err != nil {
				return nil, err
			}
			js, _ := json.Marshal(u)
			raw[j] = "raw:batch:" + id
			if err := f.rdb.Set(ctx, raw[j], js, hourTTL).Err(); err != nil {
				return nil, err
			}
		}
		f.rawBatch = append(f.rawBatch, raw)
	}
	return f, nil
}

// BenchmarkRedisHit reads values of about 100 B and 10 KB (JSON) that are in
// Redis and not in the local tier.
func BenchmarkRedisHit(b *testing.B) {
	for _, size := range []string{"100B", "10KB"} {
		for _, mode := range []string{"serial", "parallel"} {
			size, par := size, mode == "parallel"
			pre := size + "/" + mode + "/"
			b.Run(pre+"tiercache", func(b *testing.B) {
				f := remoteFixtureGet(b)
				ks := f.spaces[size]
				if err := waitReady(f.c); err != nil {
					b.Fatal(err)
				}
				var before tiered.Stats
				runReads(b, f.ids, par, func() { before = ks.Stats() }, func(id string) int64 {
					u, err := ks.Get(ctx, id)
					if err != nil {
						panic(err)
					}
					return u.ID
				})
				b.StopTimer()
				after := ks.Stats()
				b.ReportMetric(float64(after.RedisHits-before.RedisHits)/float64(b.N), "redis-hits/op")
				b.ReportMetric(float64(f.sizes[size][1]), "value-B")
			})
			b.Run(pre+"go-redis-GET+json", func(b *testing.B) {
				f := remoteFixtureGet(b)
				runReads(b, f.rawKeys[size], par, nil, func(key string) int64 {
					bs, err := f.rdb.Get(ctx, key).Bytes()
					if err != nil {
						panic(err)
					}
					var u User
					if err := json.Unmarshal(bs, &u); err != nil {
						panic(err)
					}
					return u.ID
				})
				b.ReportMetric(float64(f.sizes[size][1]), "value-B")
			})
			b.Run(pre+"go-redis-GET", func(b *testing.B) {
				f := remoteFixtureGet(b)
				keys := f.rawKeys[size]
				// No decode: returns the id from the key so the check
				// passes; the bytes are only counted.
				runReads(b, keys, par, nil, func(key string) int64 {
					bs, err := f.rdb.Get(ctx, key).Bytes()
					if err != nil {
						panic(err)
					}
					sink.Add(int64(len(bs)))
					return int64(idNum(lastPart(key)))
				})
				b.ReportMetric(float64(f.sizes[size][1]), "value-B")
			})
		}
	}
}

// BenchmarkGetMany reads 100 keys that are all in Redis and not local: one
// GetMany against a pipeline of 100 GETs, each decoded into a map as GetMany
// returns them.
func BenchmarkGetMany(b *testing.B) {
	for _, mode := range []string{"serial", "parallel"} {
		par := mode == "parallel"
		b.Run(mode+"/tiercache", func(b *testing.B) {
			f := remoteFixtureGet(b)
			if err := waitReady(f.c); err != nil {
				b.Fatal(err)
			}
			var before tiered.Stats
			runBatches(b, f.batches, par, func() { before = f.batch.Stats() }, func(ids []string) int {
				m, err := f.batch.GetMany(ctx, ids)
				if err != nil {
					panic(err)
				}
				return len(m)
			})
			b.StopTimer()
			after := f.batch.Stats()
			b.ReportMetric(float64(after.RedisHits-before.RedisHits)/float64(b.N), "redis-hits/op")
		})
		b.Run(mode+"/go-redis-pipeline+json", func(b *testing.B) {
			f := remoteFixtureGet(b)
			runBatches(b, f.rawBatch, par, nil, func(keys []string) int {
				return rawPipeline(f.rdb, keys, true)
			})
		})
		b.Run(mode+"/go-redis-pipeline", func(b *testing.B) {
			f := remoteFixtureGet(b)
			runBatches(b, f.rawBatch, par, nil, func(keys []string) int {
				return rawPipeline(f.rdb, keys, false)
			})
		})
	}
}

// rawPipeline is what a user of go-redis writes for a batch read: pipelined
// GETs, then (with decode) each value decoded into a map by id.
func rawPipeline(rdb *redis.Client, keys []string, decode bool) int {
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil {
		panic(err)
	}
	if !decode {
		n := 0
		for _, c := range cmds {
			if c.Err() == nil {
				n++
			}
		}
		return n
	}
	out := make(map[string]User, len(keys))
	for i, c := range cmds {
		bs, err := c.Bytes()
		if err != nil {
			continue
		}
		var u User
		if err := json.Unmarshal(bs, &u); err != nil {
			panic(err)
		}
		out[lastPart(keys[i])] = u
	}
	return len(out)
}

// runBatches checks that every batch read returns all 100 values, then
// times it over the batches in turn.
func runBatches(b *testing.B, batches [][]string, parallel bool, begin func(), get func([]string) int) {
	for _, ids := range batches {
		if n := get(ids); n != len(ids) {
			b.Fatalf("%d of %d values", n, len(ids))
		}
	}
	if begin != nil {
		begin()
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for i := 0; i < b.N; i++ {
			get(batches[i%len(batches)])
		}
		return
	}
	// Goroutine g of P reads batches g, g+P, ...: never the batch another
	// goroutine is reading.
	procs := runtime.GOMAXPROCS(0)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		j := int(next.Add(1) - 1)
		for pb.Next() {
			get(batches[j%len(batches)])
			j += procs
		}
	})
}
