package tiered

import (
	"context"
	"errors"
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
	"github.com/tiercache/tiercache/remote"
)

// The guarantees of the library, run unchanged against one redis-server, a
// Redis Cluster (three masters, three replicas) and a Sentinel setup. Every
// Client gets its own go-redis client, as a separate process would.

// backend is a Redis deployment.
type backend struct {
	name    string
	masters int // nodes that serve keys
	// newRedis returns a new go-redis client with connections of its own;
	// ctxDeadlines sets its ContextTimeoutEnabled.
	newRedis func(ctxDeadlines bool) redis.UniversalClient
	// nodeOf returns the address of the node that serves key.
	nodeOf func(t testing.TB, key string) string
	// killPubSub kills every Pub/Sub connection on every node and returns
	// how many it killed.
	killPubSub func(t testing.TB) int
	// cluster is set on a Redis Cluster.
	cluster *redistest.Cluster
}

func singleBackend(t testing.TB) backend {
	srv := redistest.Start(t)
	return backend{
		name:    "single",
		masters: 1,
		newRedis: func(ctxDeadlines bool) redis.UniversalClient {
			o := srv.RedisOptions()
			o.ContextTimeoutEnabled = ctxDeadlines
			return redis.NewClient(o)
		},
		nodeOf:     func(testing.TB, string) string { return srv.Addr },
		killPubSub: func(t testing.TB) int { return srv.KillClients(t, "TYPE", "pubsub") },
	}
}

func defaultCluster(t testing.TB) backend { return clusterBackend(t) }

// clusterBackend starts a cluster whose nodes get args.
func clusterBackend(t testing.TB, args ...string) backend {
	start := time.Now()
	cl := redistest.StartCluster(t, redistest.Options{Args: args})
	t.Logf("Redis Cluster (3 masters, 3 replicas) up in %v", time.Since(start).Round(time.Millisecond))
	return backend{
		name:    "cluster",
		masters: len(cl.Masters(t)),
		newRedis: func(ctxDeadlines bool) redis.UniversalClient {
			o := cl.ClusterOptions()
			o.ContextTimeoutEnabled = ctxDeadlines
			return redis.NewClusterClient(o)
		},
		nodeOf:     func(t testing.TB, key string) string { return cl.NodeForSlot(t, int(remote.Slot(key))) },
		killPubSub: func(t testing.TB) int { return cl.KillClients(t, "TYPE", "pubsub") },
		cluster:    cl,
	}
}

// slotOf is what Delete groups ids by: the key's slot on a cluster, one
// group on a single server.
func (b backend) slotOf(key string) uint16 {
	if b.cluster == nil {
		return 0
	}
	return remote.Slot(key)
}

// client returns a Client over a new go-redis client of b. trips, if not
// nil, counts that go-redis client's round trips per node. Both are closed
// when the test ends.
func (b backend) client(t testing.TB, trips *nodeTrips, opts ...func(*Options)) *Client {
	t.Helper()
	return b.clientOf(t, b.newRedis(false), trips, opts...)
}

func (b backend) clientOf(t testing.TB, rdb redis.UniversalClient, trips *nodeTrips, opts ...func(*Options)) *Client {
	t.Helper()
	if trips != nil {
		trips.watch(rdb) // before any command: hooks are not safe to add concurrently
	}
	t.Cleanup(func() { _ = rdb.Close() }) // after the Client's Close
	o := Options{Redis: rdb}
	for _, f := range opts {
		f(&o)
	}
	c, err := NewClient(o)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// raw returns a plain go-redis client of b for inspecting Redis.
func (b backend) raw(t testing.TB) redis.UniversalClient {
	rdb := b.newRedis(false)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// nodeTrips counts round trips per Redis node: a go-redis ClusterClient
// splits a pipeline into one per node, which its node clients' hooks see
// (the hook of the ClusterClient itself sees one pipeline).
type nodeTrips struct {
	mu     sync.Mutex
	pipes  map[string]int // pipelines, per node address
	cmds   int            // commands in them
	single []string       // commands sent on their own
}

func (n *nodeTrips) watch(rdb redis.UniversalClient) {
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(node *redis.Client) { node.AddHook(nodeHook{n, node.Options().Addr}) })
	case *redis.Client:
		c.AddHook(nodeHook{n, c.Options().Addr})
	}
}

func (n *nodeTrips) reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pipes, n.cmds, n.single = map[string]int{}, 0, nil
}

func (n *nodeTrips) snapshot() (pipes map[string]int, cmds int, single []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pipes = make(map[string]int, len(n.pipes))
	for k, v := range n.pipes {
		pipes[k] = v
	}
	return pipes, n.cmds, append([]string(nil), n.single...)
}

type nodeHook struct {
	n    *nodeTrips
	addr string
}

func (h nodeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// Connection set-up and the cluster client's topology reads are
		// not ours.
		if !setupCmds[cmd.Name()] && cmd.Name() != "cluster" && cmd.Name() != "command" {
			h.n.mu.Lock()
			h.n.single = append(h.n.single, cmd.Name())
			h.n.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.mu.Lock()
		if h.n.pipes == nil {
			h.n.pipes = map[string]int{}
		}
		h.n.pipes[h.addr]++
		h.n.cmds += len(cmds)
		h.n.mu.Unlock()
		return next(ctx, cmds)
	}
}

func TestClusterSameGuaranteesAsSingleServer(t *testing.T) {
	for _, start := range []func(testing.TB) backend{singleBackend, defaultCluster} {
		start := start
		b := start(t)
		t.Run(b.name, func(t *testing.T) {
			t.Run("ReadThrough", func(t *testing.T) { checkReadThrough(t, b) })
			t.Run("SetGetDelete", func(t *testing.T) { checkSetGetDelete(t, b) })
			t.Run("GetManyOneTripPerNode", func(t *testing.T) { checkGetMany(t, b) })
			t.Run("DeleteManySlots", func(t *testing.T) { checkDeleteMany(t, b) })
			t.Run("Bus", func(t *testing.T) { checkBus(t, b) })
			t.Run("Herd", func(t *testing.T) { checkHerd(t, b) })
			t.Run("Groups", func(t *testing.T) { checkGroups(t, b) })
		})
	}
}

// checkReadThrough: a miss loads once across two Clients and fills both
// tiers.
func checkReadThrough(t *testing.T, b backend) {
	db := newDB()
	db.put("42", "ada")
	a, c := b.client(t, nil), b.client(t, nil)
	waitReady(t, a, c)
	ka := newKS(t, a, Config[user]{Name: "rt", Loader: db.load})
	kc := newKS(t, c, Config[user]{Name: "rt", Loader: db.load})
	for _, k := range []*Keyspace[user]{ka, ka, kc} {
		if got := mustGet(t, k, "42"); got.Name != "ada" {
			t.Fatalf("Get = %+v", got)
		}
	}
	if n := db.loads.Load(); n != 1 {
		t.Fatalf("loader ran %d times, want 1", n)
	}
	if sa, sc := ka.Stats(), kc.Stats(); sa.LocalHits != 1 || sa.LeasesWon != 1 || sc.RedisHits != 1 || sc.Loads != 0 {
		t.Fatalf("stats: loading Client %+v, peer %+v", sa, sc)
	}
	raw, err := b.raw(t).Get(ctxT(t), "rt:42").Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if env, err := remote.DecodeEnvelope(raw); err != nil || !strings.Contains(string(env.Payload), `"ada"`) {
		t.Fatalf("rt:42 in Redis = %q, %v", raw, err)
	}
}

// checkSetGetDelete: cache-aside writes and reads, seen by a peer.
func checkSetGetDelete(t *testing.T, b backend) {
	a, c := b.client(t, nil), b.client(t, nil)
	waitReady(t, a, c)
	ka := newKS(t, a, Config[user]{Name: "sgd"})
	kc := newKS(t, c, Config[user]{Name: "sgd", LocalTTL: time.Hour})
	ctx := ctxT(t)
	if _, err := ka.Get(ctx, "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of an absent id: %v, want ErrNotFound", err)
	}
	if err := ka.Set(ctx, "1", user{ID: "1", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, kc, "1"); got.Name != "x" {
		t.Fatalf("peer Get after Set = %+v", got)
	}
	if err := ka.Delete(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "peer drops the deleted value", func() bool {
		_, err := kc.Get(ctx, "1")
		return errors.Is(err, ErrNotFound)
	})
	if n, err := b.raw(t).Exists(ctx, "sgd:1", keys.LeaseKey("sgd:1")).Result(); err != nil || n != 0 {
		t.Fatalf("after Delete EXISTS = %d, %v", n, err)
	}
}

// spread returns n ids of keyspace ns and how many slots and nodes their
// keys fall on.
func spread(t testing.TB, b backend, ns string, n int) (ids []string, slots, nodes int) {
	s, nd := map[uint16]bool{}, map[string]bool{}
	for i := 0; i < n; i++ {
		id := fmt.Sprint(i)
		ids = append(ids, id)
		s[remote.Slot(keys.Key(ns, id))] = true
		nd[b.nodeOf(t, keys.Key(ns, id))] = true
	}
	return ids, len(s), len(nd)
}

// checkGetMany: 200 ids over many slots come back right, in one pipeline
// per master (one round trip on a single server).
func checkGetMany(t *testing.T, b backend) {
	trips := &nodeTrips{}
	c := b.client(t, trips)
	waitReady(t, c)
	k := newKS(t, c, Config[user]{Name: "many"})
	ids, slots, nodes := spread(t, b, "many", 200)
	if nodes != b.masters {
		t.Fatalf("200 keys fall on %d nodes of %d", nodes, b.masters)
	}
	ctx := ctxT(t)
	for _, id := range ids {
		if err := k.Set(ctx, id, user{ID: id, Name: "n" + id}); err != nil {
			t.Fatal(err)
		}
	}
	k.flush(false)
	mustGet(t, k, ids[0]) // the keyspace's epoch is known from here on
	k.flush(false)
	trips.reset()
	m, err := k.GetMany(ctx, ids)
	if err != nil || len(m) != len(ids) {
		t.Fatalf("GetMany = %d values, %v", len(m), err)
	}
	for _, id := range ids {
		if m[id].Name != "n"+id {
			t.Fatalf("GetMany[%s] = %+v", id, m[id])
		}
	}
	pipes, cmds, single := trips.snapshot()
	t.Logf("GetMany of %d ids over %d slots: pipelines per node %v", len(ids), slots, pipes)
	if len(single) != 0 || cmds != len(ids) || len(pipes) != b.masters {
		t.Fatalf("GetMany sent %v alone and %d commands in pipelines to %d nodes; want none alone, %d commands, %d nodes", single, cmds, len(pipes), len(ids), b.masters)
	}
	for addr, n := range pipes {
		if n != 1 {
			t.Fatalf("GetMany sent %d pipelines to %s, want 1", n, addr)
		}
	}
}

// checkDeleteMany: Delete of 100 ids over many slots removes them from
// Redis in one pipeline per master, publishes one message per batch (per
// slot on a cluster), and a peer evicts every one.
func checkDeleteMany(t *testing.T, b backend) {
	db := newDB()
	trips := &nodeTrips{}
	a, c := b.client(t, trips), b.client(t, nil)
	waitReady(t, a, c)
	ka := newKS(t, a, Config[user]{Name: "del", Loader: db.load, LocalTTL: time.Hour})
	kc := newKS(t, c, Config[user]{Name: "del", Loader: db.load, LocalTTL: time.Hour})
	ids, _, _ := spread(t, b, "del", 100)
	batches := map[uint16]bool{}
	for _, id := range ids {
		db.put(id, "old")
		mustGet(t, kc, id)
		batches[b.slotOf(keys.Key("del", id))] = true
	}
	ctx := ctxT(t)
	warm := make([]string, 100) // loads the delete script on every master
	for i := range warm {
		warm[i] = fmt.Sprintf("warm-%d", i)
	}
	if err := ka.Delete(ctx, warm...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the peer applies the warm-up", func() bool {
		return c.Stats().InvalidationsApplied == a.Stats().InvalidationsSent
	})
	for _, id := range ids {
		db.put(id, "new")
	}
	sent, evicted := a.Stats().InvalidationsSent, kc.Stats().PeerInvalidations
	trips.reset()
	if err := ka.Delete(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	pipes, _, single := trips.snapshot()
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
	if n := a.Stats().InvalidationsSent - sent; n != uint64(len(batches)) {
		t.Fatalf("Delete published %d messages, want one per batch: %d", n, len(batches))
	}
	eventually(t, 5*time.Second, "the peer applies every batch", func() bool {
		return c.Stats().InvalidationsApplied == a.Stats().InvalidationsSent // only a publishes
	})
	if n := kc.Stats().PeerInvalidations - evicted; n != uint64(len(ids)) {
		t.Fatalf("the peer evicted %d ids, want %d", n, len(ids))
	}
	for _, id := range ids {
		if u := mustGet(t, kc, id); u.Name != "new" {
			t.Fatalf("peer serves %+v after Delete, want the new value", u)
		}
	}
	if n := countKeys(t, b, "del", ids); n != len(ids) { // reloaded by the peer's Gets
		t.Fatalf("%d of %d ids back in Redis after the peer's reads", n, len(ids))
	}
	if err := ka.Delete(ctx, ids...); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, b, "del", ids); n != 0 {
		t.Fatalf("%d of %d ids still in Redis after Delete", n, len(ids))
	}
}

// countKeys counts the value and lease keys of ids in Redis.
func countKeys(t *testing.T, b backend, ns string, ids []string) int {
	ctx := ctxT(t)
	raw := b.raw(t)
	cmds := make([]*redis.IntCmd, 0, 2*len(ids))
	_, err := raw.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			k := keys.Key(ns, id)
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

// checkBus: a Set in one Client evicts another's copy, also when the value
// and the channel live on different nodes; a killed subscriber connection
// leads to a resubscription that flushes, so a write missed meanwhile is
// not served from an hour-long local copy.
func checkBus(t *testing.T, b backend) {
	db := newDB()
	channel := "tc-bus"
	id := "1"
	for i := 0; b.masters > 1 && b.nodeOf(t, keys.Key("bus", id)) == b.nodeOf(t, channel); i++ {
		id = fmt.Sprint(i) // a value on another node than the channel's
	}
	db.put(id, "v1")
	downs := make(chan struct{}, 8)
	release := make(chan struct{})
	var held, released sync.Once
	hooks := &testHooks{busDown: func() {
		downs <- struct{}{}
		held.Do(func() { <-release }) // hold the first reconnect until the test allows it
	}}
	withChannel := func(o *Options) { o.Channel = channel }
	a := b.client(t, nil, withChannel)
	c := b.client(t, nil, withChannel, func(o *Options) { o.hooks = hooks })
	t.Cleanup(func() { released.Do(func() { close(release) }) }) // before c closes
	waitReady(t, a, c)
	ka := newKS(t, a, Config[user]{Name: "bus", Loader: db.load, LocalTTL: time.Hour})
	kc := newKS(t, c, Config[user]{Name: "bus", Loader: db.load, LocalTTL: time.Hour})
	mustGet(t, kc, id)
	ctx := ctxT(t)
	if err := ka.Set(ctx, id, user{ID: id, Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the peer sees v2", func() bool { return mustGet(t, kc, id).Name == "v2" })
	if s := c.Stats(); s.InvalidationsApplied != 1 {
		t.Fatalf("the peer applied %d invalidations, want 1", s.InvalidationsApplied)
	}

	if n := b.killPubSub(t); n < 2 {
		t.Fatalf("killed %d Pub/Sub connections, want both Clients'", n)
	}
	<-downs
	if err := ka.Set(ctx, id, user{ID: id, Name: "v3"}); err != nil { // the peer cannot hear it
		t.Fatal(err)
	}
	if c.Ready() {
		t.Fatal("the peer reports ready while its bus is down")
	}
	released.Do(func() { close(release) })
	eventually(t, 10*time.Second, "the peer resubscribes", func() bool { return c.Stats().Resubscriptions == 1 && c.Ready() })
	if got := mustGet(t, kc, id); got.Name != "v3" {
		t.Fatalf("after resubscribing the peer serves %+v, want v3", got)
	}
}

// checkHerd: 2 Clients x 100 goroutines on one cold key load it once.
func checkHerd(t *testing.T, b backend) {
	db := newDB()
	want := db.put("hot", "herd")
	var loads atomic.Int64
	loader := func(ctx context.Context, id string) (user, error) {
		loads.Add(1)
		time.Sleep(200 * time.Millisecond) // the cost of a slow query, not synchronisation
		return db.load(ctx, id)
	}
	a, c := b.client(t, nil), b.client(t, nil)
	waitReady(t, a, c)
	ks := []*Keyspace[user]{newKS(t, a, Config[user]{Name: "herd", Loader: loader}), newKS(t, c, Config[user]{Name: "herd", Loader: loader})}
	ctx := ctxT(t)
	start := make(chan struct{})
	errs := make(chan error, 200)
	var wg sync.WaitGroup
	for _, k := range ks {
		for i := 0; i < 100; i++ {
			k := k
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				u, err := k.Get(ctx, "hot")
				if err == nil && u != want {
					err = fmt.Errorf("got %+v, want %+v", u, want)
				}
				if err != nil {
					errs <- err
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("%d Gets failed, first: %v", len(errs)+1, err)
	}
	if n := loads.Load(); n != 1 {
		t.Fatalf("the loader ran %d times for 200 concurrent Gets in 2 Clients, want 1", n)
	}
}

// checkGroups: InvalidateGroup works when the group's version key and the
// values live in different slots (and nodes).
func checkGroups(t *testing.T, b backend) {
	db := newDB()
	group := func(id string) string { return strings.SplitN(id, "/", 2)[0] }
	a, c := b.client(t, nil), b.client(t, nil)
	waitReady(t, a, c)
	cfg := Config[user]{Name: "grp", Group: group, Loader: db.load, LocalTTL: time.Hour}
	ka, kc := newKS(t, a, cfg), newKS(t, c, cfg)
	var ids []string
	for _, g := range []string{"t1", "t2"} {
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("%s/%d", g, i)
			ids = append(ids, id)
			db.put(id, "old")
		}
	}
	for _, k := range []*Keyspace[user]{ka, kc} {
		for _, id := range ids {
			mustGet(t, k, id)
		}
	}
	ctx := ctxT(t)
	verKey := keys.VersionKey("grp", "t1")
	if b.masters > 1 {
		other := 0
		for _, id := range ids[:20] {
			key, _, err := kc.keyOf(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if b.nodeOf(t, key) != b.nodeOf(t, verKey) {
				other++
			}
		}
		if other == 0 {
			t.Fatalf("every value of t1 shares a node with %s: the test proves nothing", verKey)
		}
	}
	for _, id := range ids[:20] {
		db.put(id, "new")
	}
	loads := db.loads.Load()
	if err := ka.InvalidateGroup(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []*Keyspace[user]{ka, kc} {
		k := k
		eventually(t, 5*time.Second, "group t1 invalidated", func() bool {
			for _, id := range ids[:20] {
				if mustGet(t, k, id).Name != "new" {
					return false
				}
			}
			return true
		})
	}
	if n := db.loads.Load() - loads; n != 20 {
		t.Fatalf("invalidating t1 caused %d loads, want 20 (one per id, across both Clients)", n)
	}
	for _, k := range []*Keyspace[user]{ka, kc} {
		for _, id := range ids[20:] {
			if u := mustGet(t, k, id); u.Name != "old" {
				t.Fatalf("group t2 was invalidated too: %+v", u)
			}
		}
	}
	if n := db.loads.Load() - loads; n != 20 {
		t.Fatalf("group t2 was reloaded: %d loads", n-20)
	}
	if v, err := b.raw(t).Get(ctx, verKey).Result(); err != nil || v == "" {
		t.Fatalf("version key %s = %q, %v", verKey, v, err)
	}
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
	cs := []*Client{b.client(t, nil), b.client(t, nil)}
	waitReady(t, cs...)
	ks := make([]*Keyspace[user], len(cs))
	probes := make([]*Keyspace[user], len(cs))
	for i, c := range cs {
		ks[i] = newKS(t, c, Config[user]{Name: "fo", Loader: db.load, LocalTTL: localTTL})
		probes[i] = newKS(t, c, Config[user]{Name: "fop"})
		for _, id := range ids {
			mustGet(t, ks[i], id)
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
	b, err := raw.Get(ctxT(t), keys.Key(ns, id)).Bytes()
	if err != nil {
		return err.Error()
	}
	env, err := remote.DecodeEnvelope(b)
	if err != nil {
		return err.Error()
	}
	var u user
	if err := defaultCodec[user]().Unmarshal(env.Payload, &u); err != nil {
		return err.Error()
	}
	return fmt.Sprint(u.Ver)
}

func (d *testDB) version(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rows[id].Ver
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
				case b.nodeOf(t, keys.Key("fo", id)) == victim && on < 10:
					on++
					ids = append(ids, id)
				case b.nodeOf(t, keys.Key("fo", id)) != victim && off < 10:
					off++
					ids = append(ids, id)
				}
			}
			probe := "0"
			for i := 0; b.nodeOf(t, keys.Key("fop", probe)) != victim; i++ {
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
	id := "0"
	for i := 0; b.nodeOf(t, keys.Key("rp", id)) == b.nodeOf(t, defaultChannel); i++ {
		id = fmt.Sprint(i)
	}
	victim := b.nodeOf(t, keys.Key("rp", id))
	db := newDB()
	db.put(id, "v1")
	a, c := b.client(t, nil), b.client(t, nil)
	waitReady(t, a, c)
	cfg := Config[user]{Name: "rp", Loader: db.load, LocalTTL: 2 * time.Second}
	ka, kc := newKS(t, a, cfg), newKS(t, c, cfg)
	if u := mustGet(t, kc, id); u.Ver != 1 {
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
	if err := ka.Set(ctx, id, db.put(id, "v2")); err == nil {
		t.Fatal("Set succeeded with its master dead")
	}
	if s := a.Stats(); s.BreakerOpens != 0 || s.ReplayPending != 1 {
		t.Fatalf("after one failed Set: %+v; want the breaker closed and the id queued", s)
	}
	took := b.cluster.WaitFailover(t)
	t.Logf("failover took %v", took.Round(time.Millisecond))
	raw := b.raw(t) // a new go-redis client: it routes to the new master
	deadline := time.Now().Add(recoverWithin)
	for redisVersion(t, raw, "rp", id) == "1" {
		if time.Now().After(deadline) {
			t.Fatalf("%v after the failover Redis still holds version 1 of %s, which a failed Set replaced (version 2): the queued invalidation was not replayed; A: %+v",
				recoverWithin, id, a.Stats())
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	eventually(t, cfg.LocalTTL+time.Second, "the peer serves version 2", func() bool { return mustGet(t, kc, id).Ver == 2 })
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
		newRedis: func(ctxDeadlines bool) redis.UniversalClient {
			o := s.FailoverOptions()
			o.ContextTimeoutEnabled = ctxDeadlines
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
	for _, start := range []func(testing.TB) backend{singleBackend, defaultCluster} {
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
