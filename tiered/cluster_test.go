package tiered

import (
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/keys"
)

// What only a Redis Cluster (or a Sentinel setup) can show: batches split by
// slot, failovers. The guarantees every deployment shares are the tests run
// by onEveryBackend, beside the code they test.

// TestDeleteManyOnePipelinePerNode: Delete of 100 ids over many slots
// removes them from Redis in one pipeline per master, publishes one message
// per batch (per slot on a cluster), and a peer evicts every one.
func TestDeleteManyOnePipelinePerNode(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		db := newDB()
		log := &tripLog{}
		p := peersOf(t, b.client(t, log), b.client(t, nil), Config[user]{Name: "del", Loader: db.load, LocalTTL: time.Hour})
		ids, _, _ := spread(t, b, "del", 100)
		batches := map[uint16]bool{}
		for _, id := range ids {
			db.put(id, "old")
			mustGet(t, p.kb, id)
			batches[b.slotOf(keyOf(t, p.ka, id))] = true
		}
		ctx := ctxT(t)
		warm := make([]string, 100) // loads the delete script on every master
		for i := range warm {
			warm[i] = fmt.Sprintf("warm-%d", i)
		}
		if err := p.ka.Delete(ctx, warm...); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "the peer applies the warm-up", func() bool {
			return p.b.Stats().InvalidationsApplied == p.a.Stats().InvalidationsSent
		})
		for _, id := range ids {
			db.put(id, "new")
		}
		sent, evicted := p.a.Stats().InvalidationsSent, p.kb.Stats().PeerInvalidations
		log.reset()
		if err := p.ka.Delete(ctx, ids...); err != nil {
			t.Fatal(err)
		}
		trips := log.snapshot()
		pipes, single := trips.pipelines(), trips.alone()
		t.Logf("Delete of %d ids in %d batches: pipelines per node %v, alone %v", len(ids), len(batches), pipes, single)
		if len(batches) == 1 { // one script call, not pipelined
			if len(pipes) != 0 || len(single) != 1 {
				t.Fatalf("Delete in one batch sent pipelines %v and %v alone; want one script call", pipes, single)
			}
		} else if len(pipes) != b.masters || len(single) > 0 {
			t.Fatalf("Delete sent pipelines to %v and %v alone; want one pipeline to each of %d nodes", pipes, single, b.masters)
		}
		for addr, n := range pipes {
			if n != 1 {
				t.Fatalf("Delete sent %d pipelines to %s, want 1", n, addr)
			}
		}
		if n := p.a.Stats().InvalidationsSent - sent; n != uint64(len(batches)) {
			t.Fatalf("Delete published %d messages, want one per batch: %d", n, len(batches))
		}
		eventually(t, 5*time.Second, "the peer applies every batch", func() bool {
			return p.b.Stats().InvalidationsApplied == p.a.Stats().InvalidationsSent // only a publishes
		})
		if n := p.kb.Stats().PeerInvalidations - evicted; n != uint64(len(ids)) {
			t.Fatalf("the peer evicted %d ids, want %d", n, len(ids))
		}
		for _, id := range ids {
			if u := mustGet(t, p.kb, id); u.Name != "new" {
				t.Fatalf("peer serves %+v after Delete, want the new value", u)
			}
		}
		if n := countKeys(t, b, "del", ids); n != len(ids) { // reloaded by the peer's Gets
			t.Fatalf("%d of %d ids back in Redis after the peer's reads", n, len(ids))
		}
		if err := p.ka.Delete(ctx, ids...); err != nil {
			t.Fatal(err)
		}
		if n := countKeys(t, b, "del", ids); n != 0 {
			t.Fatalf("%d of %d ids still in Redis after Delete", n, len(ids))
		}
	})
}

// countKeys counts the value and lease keys of ids in Redis.
func countKeys(t *testing.T, b backend, ns string, ids []string) int {
	ctx := ctxT(t)
	raw := b.raw(t)
	cmds := make([]*redis.IntCmd, 0, 2*len(ids))
	epoch := b.epoch(t, ns)
	_, err := raw.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			k := keys.ValueKey(ns, epoch, 0, id)
			cmds = append(cmds, p.Exists(ctx, k), p.Exists(ctx, keys.LeaseKey(k)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range cmds {
		n += int(c.Val())
	}
	return n
}

// recoverWithin bounds how long after a failover the Clients may still fail
// to write or to listen: a few probes of the circuit breaker.
const recoverWithin = 3 * time.Second

// failoverRun is the outcome of a workload run across a failover.
type failoverRun struct {
	failover  time.Duration // kill to failed over, as the deployment reports it
	recovered time.Duration // kill to every Client writing to the new master and subscribed
	converged time.Duration // kill to no Client serving a value older than the database's
}

// checkFailover runs Gets (with a Loader) and Sets of ids in two Clients
// while kill crashes the master that serves probe's key ("fop:<probe>")
// and some of the ids. Callers with a Loader must see no error. The writer
// stops once every Client can write probe again, so the writes that failed
// during the failover stay the last ones; LocalTTL after the last Set, no
// Client may serve a value older than the database's.
func checkFailover(t *testing.T, b backend, ids []string, probe string, kill func(), waitFailover func() time.Duration) failoverRun {
	const localTTL = 2 * time.Second
	db := newDB()
	for _, id := range ids {
		db.put(id, "v")
	}
	p := newPeers(t, b, Config[user]{Name: "fo", Loader: db.load, LocalTTL: localTTL})
	cs, ks := []*Client{p.a, p.b}, []*Keyspace[user]{p.ka, p.kb}
	probes := []*Keyspace[user]{newKS(t, p.a, Config[user]{Name: "fop"}), newKS(t, p.b, Config[user]{Name: "fop"})}
	for _, k := range ks {
		for _, id := range ids {
			mustGet(t, k, id)
		}
	}
	ctx := ctxT(t)

	stopReaders, stopWriter := make(chan struct{}), make(chan struct{})
	var readers, writer sync.WaitGroup
	var gets, getErrs, sets atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	for r := 0; r < 4; r++ {
		r := r
		readers.Add(1)
		go func() { // every Get must succeed
			defer readers.Done()
			rnd := rand.New(rand.NewSource(int64(r)))
			tick := time.NewTicker(time.Millisecond) // pacing, not synchronisation
			defer tick.Stop()
			for {
				select {
				case <-stopReaders:
					return
				case <-tick.C:
				}
				id := ids[rnd.Intn(len(ids))]
				u, err := ks[r%len(ks)].Get(ctx, id)
				gets.Add(1)
				if err == nil && u.ID != id {
					err = fmt.Errorf("Get(%s) returned %+v", id, u)
				}
				if err != nil {
					getErrs.Add(1)
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
				}
			}
		}()
	}
	var lastSet atomic.Int64 // UnixNano when the last Set returned
	failed := make(map[string]int)
	writer.Add(1)
	go func() { // the database first, then the cache, as an application does
		defer writer.Done()
		rnd := rand.New(rand.NewSource(99))
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			case <-tick.C:
			}
			id := ids[rnd.Intn(len(ids))]
			u := db.put(id, "v")
			err := ks[i%len(ks)].Set(ctx, id, u)
			errMu.Lock()
			if err != nil {
				failed[id] = u.Ver
			} else {
				delete(failed, id)
			}
			errMu.Unlock()
			sets.Add(1)
			lastSet.Store(time.Now().UnixNano())
		}
	}()
	var stopW, stopR sync.Once
	stopAll := func() {
		stopW.Do(func() { close(stopWriter) })
		stopR.Do(func() { close(stopReaders) })
		writer.Wait()
		readers.Wait()
	}
	t.Cleanup(stopAll)

	eventually(t, 10*time.Second, "the workload runs", func() bool { return sets.Load() >= 20 })
	killed := time.Now()
	kill()
	var run failoverRun
	run.failover = waitFailover()
	eventually(t, 30*time.Second, "every Client writes to the new master and listens again", func() bool {
		for i, k := range probes {
			if !cs[i].Ready() || k.Set(ctx, probe, user{ID: probe}) != nil {
				return false
			}
		}
		return true
	})
	run.recovered = time.Since(killed)
	if lag := run.recovered - run.failover; lag > recoverWithin {
		t.Errorf("the Clients wrote and listened again %v after the deployment had failed over; want within %v", lag.Round(time.Millisecond), recoverWithin)
	}
	stopW.Do(func() { close(stopWriter) })
	writer.Wait()
	last := time.Unix(0, lastSet.Load())
	errMu.Lock()
	t.Logf("%d Sets; ids whose last Set failed: %v (id: version)", sets.Load(), failed)
	errMu.Unlock()

	// The staleness bound: LocalTTL after the last Set, every Client serves
	// the database's version. Readers go on meanwhile.
	<-time.After(time.Until(last.Add(localTTL + 50*time.Millisecond)))
	raw := b.raw(t)
	stale := func() (out []string) {
		for i, k := range ks {
			for _, id := range ids {
				want := db.version(id)
				u, err := k.Get(ctx, id)
				if err != nil {
					t.Errorf("Client %d: Get(%s) after recovery: %v", i, id, err)
					continue
				}
				if u.Ver != want {
					out = append(out, fmt.Sprintf("Client %d id %s: served version %d, database has %d, Redis has %s", i, id, u.Ver, want, redisVersion(t, raw, "fo", id)))
				}
			}
		}
		return out
	}
	if s := stale(); len(s) > 0 {
		t.Errorf("%d stale values %v after the last Set (LocalTTL %v):\n%s", len(s), time.Since(last).Round(time.Millisecond), localTTL, strings.Join(s, "\n"))
		for i, c := range cs {
			t.Logf("Client %d then: %+v", i, c.Stats())
		}
		deadline := time.Now().Add(30 * time.Second)
		for len(stale()) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond) // poll interval
		}
	}
	run.converged = time.Since(killed)
	stopAll()
	t.Logf("%d Gets, %d failed", gets.Load(), getErrs.Load())
	for i, c := range cs {
		t.Logf("Client %d: %+v\nkeyspace %+v", i, c.Stats(), ks[i].Stats())
	}
	if n := getErrs.Load(); n > 0 {
		t.Errorf("%d Gets with a Loader failed, first: %v", n, firstErr)
	}
	return run
}

// redisVersion describes the version of id's value in Redis.
func redisVersion(t *testing.T, raw redis.UniversalClient, ns, id string) string {
	u, err := userAt(ctxT(t), raw, keys.Key(ns, id))
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(u.Ver)
}

// TestClusterFailover kills a master under load. "full-coverage" is Redis's
// default: the whole cluster refuses commands until the replica takes over,
// and the victim also serves the bus's channel. "partial-coverage"
// (cluster-require-full-coverage no) keeps the other masters serving, so
// only the victim's keys fail, and the bus is not affected.
func TestClusterFailover(t *testing.T) {
	for _, tc := range []struct {
		name        string
		args        []string
		killChannel bool
	}{
		{"full-coverage", nil, true},
		{"partial-coverage", []string{"--cluster-require-full-coverage", "no"}, false},
	} {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			waitDialers(t)
			b := clusterBackend(t, tc.args...)
			var victim string
			for _, m := range b.cluster.Masters(t) {
				if (m == b.nodeOf(t, defaultChannel)) == tc.killChannel {
					victim = m
				}
			}
			var ids []string
			on, off := 0, 0
			for i := 0; len(ids) < 20; i++ {
				id := fmt.Sprint(i)
				switch {
				case b.nodeOf(t, b.valueKey(t, "fo", id)) == victim && on < 10:
					on++
					ids = append(ids, id)
				case b.nodeOf(t, b.valueKey(t, "fo", id)) != victim && off < 10:
					off++
					ids = append(ids, id)
				}
			}
			probe := "0"
			for i := 0; b.nodeOf(t, b.valueKey(t, "fop", probe)) != victim; i++ {
				probe = fmt.Sprint(i)
			}
			run := checkFailover(t, b, ids, probe,
				func() { b.cluster.KillMaster(t, victim) },
				func() time.Duration { return b.cluster.WaitFailover(t) })
			t.Logf("cluster failover took %v; the Clients wrote and listened again %v after the kill; no stale value %v after it",
				run.failover.Round(time.Millisecond), run.recovered.Round(time.Millisecond), run.converged.Round(time.Millisecond))
		})
	}
}

// TestClusterFailedWriteIsReplayed: a Set that fails because only its
// slot's master is down (the other masters serve on, the breaker never
// opens, the bus is not affected) is queued for replay; once the replica
// has taken over, the replay must reach Redis. Otherwise Redis keeps the
// value the application overwrote, for its whole TTL, and every peer
// serves it as soon as its LocalTTL has passed.
func TestClusterFailedWriteIsReplayed(t *testing.T) {
	waitDialers(t)
	b := clusterBackend(t, "--cluster-require-full-coverage", "no")
	id := offNode(t, b, "rp", defaultChannel)
	victim := b.nodeOf(t, b.valueKey(t, "rp", id))
	db := newDB()
	db.put(id, "v1")
	cfg := Config[user]{Name: "rp", Loader: db.load, LocalTTL: 2 * time.Second}
	p := newPeers(t, b, cfg)
	if u := mustGet(t, p.kb, id); u.Ver != 1 {
		t.Fatalf("Get = %+v", u)
	}
	ctx := ctxT(t)
	direct := redis.NewClient(&redis.Options{Addr: victim})
	n, err := direct.Do(ctx, "wait", 1, 5000).Int()
	_ = direct.Close()
	if err != nil || n != 1 {
		t.Fatalf("WAIT for the replica of %s: %d, %v", victim, n, err)
	}

	b.cluster.KillMaster(t, victim)
	if err := p.ka.Set(ctx, id, db.put(id, "v2")); err == nil {
		t.Fatal("Set succeeded with its master dead")
	}
	if s := p.a.Stats(); s.BreakerOpens != 0 || s.ReplayPending != 1 {
		t.Fatalf("after one failed Set: %+v; want the breaker closed and the id queued", s)
	}
	took := b.cluster.WaitFailover(t)
	t.Logf("failover took %v", took.Round(time.Millisecond))
	raw := b.raw(t) // a new go-redis client: it routes to the new master
	deadline := time.Now().Add(recoverWithin)
	for redisVersion(t, raw, "rp", id) == "1" {
		if time.Now().After(deadline) {
			t.Fatalf("%v after the failover Redis still holds version 1 of %s, which a failed Set replaced (version 2): the queued invalidation was not replayed; A: %+v",
				recoverWithin, id, p.a.Stats())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	eventually(t, cfg.LocalTTL+time.Second, "the peer serves version 2", func() bool { return mustGet(t, p.kb, id).Ver == 2 })
}

// waitDialers waits, as the test ends, for go-redis's background redials of
// killed nodes to see their pools closed: each sleeps a second between
// tries, and TestMain's leak check would report them.
func waitDialers(t *testing.T) {
	t.Cleanup(func() {
		buf := make([]byte, 1<<20)
		deadline := time.Now().Add(5 * time.Second)
		for strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*ConnPool).tryDial") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	})
}

func TestSentinelFailover(t *testing.T) {
	waitDialers(t)
	start := time.Now()
	s := redistest.StartSentinel(t)
	t.Logf("master, replica and 3 sentinels up in %v", time.Since(start).Round(time.Millisecond))
	b := backend{
		name:    "sentinel",
		masters: 1,
		dial: func(c redisConf) redis.UniversalClient {
			o := s.FailoverOptions()
			o.ContextTimeoutEnabled, o.ClientName = c.ctxDeadlines, c.name
			return redis.NewFailoverClient(o)
		},
	}
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
	}
	run := checkFailover(t, b, ids, "probe",
		func() { s.KillMaster(t) },
		func() time.Duration { return s.WaitFailover(t) })
	t.Logf("sentinel failover took %v; the Clients wrote and listened again %v after the kill; no stale value %v after it",
		run.failover.Round(time.Millisecond), run.recovered.Round(time.Millisecond), run.converged.Round(time.Millisecond))
}

// BenchmarkCluster compares a remote hit (the local tier too small to
// help) and GetMany(100) from Redis on one server and on a cluster:
//
//	go test -run '^$' -bench Cluster -benchtime 2000x ./tiered/
func BenchmarkCluster(b *testing.B) {
	for _, start := range []func(testing.TB) backend{singleBackend, sharedCluster} {
		start := start
		be := start(b)
		b.Run(be.name, func(b *testing.B) {
			c := be.clientOf(b, be.newRedis(true), nil) // the fast path the README recommends
			waitReady(b, c)
			k := newKS(b, c, Config[user]{Name: "bench", LocalCapacity: 1, LocalShards: 1})
			ctx := context.Background()
			ids := make([]string, 1000)
			for i := range ids {
				ids[i] = fmt.Sprint(i)
				if err := k.Set(ctx, ids[i], user{ID: ids[i], Name: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("RemoteHit", func(b *testing.B) {
				before := k.Stats().RedisHits
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if _, err := k.Get(ctx, ids[i%len(ids)]); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if hits := k.Stats().RedisHits - before; hits < uint64(b.N)*9/10 {
					b.Fatalf("%d of %d Gets went to Redis", hits, b.N)
				}
			})
			b.Run("GetMany100", func(b *testing.B) {
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					off := (i * 100) % len(ids)
					m, err := k.GetMany(ctx, ids[off:off+100])
					if err != nil || len(m) != 100 {
						b.Fatalf("GetMany = %d values, %v", len(m), err)
					}
				}
			})
		})
	}
}
