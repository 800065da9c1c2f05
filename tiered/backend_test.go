package tiered

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// The deployments the tests run on: one redis-server, a Redis Cluster (three
// masters, three replicas) and, for failover, a Sentinel setup. Every Client
// gets its own go-redis client, as a separate process would. The guarantees
// that must hold on every deployment are tests run by onEveryBackend.

// backend is a Redis deployment.
type backend struct {
	name    string
	masters int // nodes that serve keys
	// dial returns a new go-redis client of the deployment, with
	// connections of its own.
	dial func(redisConf) redis.UniversalClient
	// nodeOf returns the address of the node that serves key.
	nodeOf func(t testing.TB, key string) string
	// killPubSub kills every Pub/Sub connection on every node and returns
	// how many it killed.
	killPubSub func(t testing.TB) int
	// cluster is set on a Redis Cluster, server on a single server.
	cluster *redistest.Cluster
	server  *redistest.Server
}

// redisConf is what a test chooses of a go-redis client.
type redisConf struct {
	ctxDeadlines bool   // ContextTimeoutEnabled
	name         string // ClientName: CLIENT LIST shows it
}

// serverBackend is srv as a backend.
func serverBackend(srv *redistest.Server) backend {
	return backend{
		name:    "single",
		masters: 1,
		dial: func(c redisConf) redis.UniversalClient {
			o := srv.RedisOptions()
			o.ContextTimeoutEnabled, o.ClientName = c.ctxDeadlines, c.name
			return redis.NewClient(o)
		},
		nodeOf:     func(testing.TB, string) string { return srv.Addr },
		killPubSub: func(t testing.TB) int { return srv.KillClients(t, "TYPE", "pubsub") },
		server:     srv,
	}
}

// singleBackend starts a redis-server for the test.
func singleBackend(t testing.TB) backend { return serverBackend(redistest.Start(t)) }

// clusterBackend starts a cluster whose nodes get args, for the test.
func clusterBackend(t testing.TB, args ...string) backend {
	start := time.Now()
	cl := redistest.StartCluster(t, redistest.Options{Args: args})
	t.Logf("Redis Cluster (3 masters, 3 replicas) up in %v", time.Since(start).Round(time.Millisecond))
	return clusterOf(t, cl)
}

// clusterOf is cl as a backend.
func clusterOf(t testing.TB, cl *redistest.Cluster) backend {
	return backend{
		name:    "cluster",
		masters: len(cl.Masters(t)),
		dial: func(c redisConf) redis.UniversalClient {
			o := cl.ClusterOptions()
			o.ContextTimeoutEnabled, o.ClientName = c.ctxDeadlines, c.name
			return redis.NewClusterClient(o)
		},
		nodeOf:     func(t testing.TB, key string) string { return cl.NodeForSlot(t, int(remote.Slot(key))) },
		killPubSub: func(t testing.TB) int { return cl.KillClients(t, "TYPE", "pubsub") },
		cluster:    cl,
	}
}

// shared is the Redis Cluster the tests of this binary share: started by
// the first that needs it (it takes about 2s), closed by TestMain.
var shared struct {
	once    sync.Once
	cluster *redistest.Cluster
	err     error
}

// sharedCluster returns the shared cluster, emptied of every key (FLUSHALL
// on each master), so the test finds it as if new. Tests that kill nodes
// start a cluster of their own.
func sharedCluster(t testing.TB) backend {
	shared.once.Do(func() {
		start := time.Now()
		shared.cluster, shared.err = redistest.StartClusterE(redistest.Options{})
		t.Logf("shared Redis Cluster (3 masters, 3 replicas) up in %v", time.Since(start).Round(time.Millisecond))
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	b := clusterOf(t, shared.cluster)
	b.eachMaster(t, func(ctx context.Context, c *redis.Client) error { return c.FlushAll(ctx).Err() })
	return b
}

// closeShared closes the shared cluster, if a test started it.
func closeShared() error {
	if shared.cluster == nil {
		return nil
	}
	return shared.cluster.Close()
}

// onEveryBackend runs test as subtest "single", on a redis-server of its
// own, and "cluster", on the shared Redis Cluster.
func onEveryBackend(t *testing.T, test func(t *testing.T, b backend)) {
	t.Run("single", func(t *testing.T) { test(t, singleBackend(t)) })
	t.Run("cluster", func(t *testing.T) { test(t, sharedCluster(t)) })
}

// newRedis returns a new go-redis client of b with connections of its own;
// ctxDeadlines sets its ContextTimeoutEnabled.
func (b backend) newRedis(ctxDeadlines bool) redis.UniversalClient {
	return b.dial(redisConf{ctxDeadlines: ctxDeadlines})
}

// slotOf is what Delete groups ids by: the key's slot on a cluster, one
// group on a single server.
func (b backend) slotOf(key string) uint16 {
	if b.cluster == nil {
		return 0
	}
	return remote.Slot(key)
}

// client returns a Client over a new go-redis client of b. log, if not
// nil, records that go-redis client's round trips. Both are closed when
// the test ends.
func (b backend) client(t testing.TB, log *tripLog, opts ...func(*Options)) *Client {
	t.Helper()
	return b.clientOf(t, b.newRedis(false), log, opts...)
}

// namedClient is client whose connections carry name in CLIENT LIST.
func (b backend) namedClient(t testing.TB, name string, opts ...func(*Options)) *Client {
	t.Helper()
	return b.clientOf(t, b.dial(redisConf{name: name}), nil, opts...)
}

func (b backend) clientOf(t testing.TB, rdb redis.UniversalClient, log *tripLog, opts ...func(*Options)) *Client {
	t.Helper()
	if log != nil {
		log.watch(rdb) // before any command: hooks are not safe to add concurrently
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

// withHooks installs test hooks in a Client before any keyspace is created.
func withHooks(h *testHooks) func(*Options) { return func(o *Options) { o.hooks = h } }

// raw returns a plain go-redis client of b for inspecting Redis.
func (b backend) raw(t testing.TB) redis.UniversalClient {
	rdb := b.newRedis(false)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// eachMaster calls fn with a client of every master of b, concurrently on
// a cluster.
func (b backend) eachMaster(t testing.TB, fn func(ctx context.Context, c *redis.Client) error) {
	t.Helper()
	ctx := ctxT(t)
	var err error
	switch raw := b.raw(t).(type) {
	case *redis.ClusterClient:
		err = raw.ForEachMaster(ctx, fn)
	case *redis.Client:
		err = fn(ctx, raw)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// keysLike returns the keys of every master of b that match pattern (KEYS).
func (b backend) keysLike(t testing.TB, pattern string) []string {
	var mu sync.Mutex
	var out []string
	b.eachMaster(t, func(ctx context.Context, c *redis.Client) error {
		ks, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		defer mu.Unlock()
		out = append(out, ks...)
		return err
	})
	return out
}

// killSubscriber kills the Pub/Sub connections named name (see namedClient)
// on every node of b and returns how many it killed.
func (b backend) killSubscriber(t testing.TB, name string) int {
	t.Helper()
	nodes := []*redistest.Server{b.server}
	if b.cluster != nil {
		nodes = nodes[:0]
		for _, addr := range b.cluster.Addrs() {
			nodes = append(nodes, b.cluster.Node(addr))
		}
	}
	n := 0
	for _, s := range nodes {
		for _, cl := range s.ClientList(t) {
			if cl["name"] == name && strings.Contains(cl["flags"], "P") {
				n += s.KillClients(t, "ID", cl["id"])
			}
		}
	}
	return n
}

// epoch returns the epoch of keyspace ns, creating it as the first Client
// would (under the server's current incarnation), so that a test can tell
// where the keyspace's values will live before any Client has read one.
func (b backend) epoch(t testing.TB, ns string) uint64 {
	t.Helper()
	ctx := ctxT(t)
	// Announced on a channel no Client listens to: the test's Clients count
	// only each other's messages.
	s := remote.NewStore(b.raw(t), remote.Options{Channel: "tiercache-test:unheard"})
	st, err := s.ServerState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := invalidation.Publisher{}.BumpPrefix(ns, epochGroup)
	if err != nil {
		t.Fatal(err)
	}
	key := keys.EpochKey(ns)
	r, err := s.Version(ctx, remote.Version{Key: key, IncarnationKey: keys.IncarnationKey(key), Incarnation: st.Incarnation, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return r.Version
}

// valueKey is where keyspace ns (without groups) keeps id's value.
func (b backend) valueKey(t testing.TB, ns, id string) string {
	return keys.ValueKey(ns, b.epoch(t, ns), 0, id)
}

// spread returns n ids of keyspace ns and how many slots and nodes their
// keys fall on.
func spread(t testing.TB, b backend, ns string, n int) (ids []string, slots, nodes int) {
	s, nd := map[uint16]bool{}, map[string]bool{}
	epoch := b.epoch(t, ns)
	for i := 0; i < n; i++ {
		id := fmt.Sprint(i)
		ids = append(ids, id)
		s[remote.Slot(keys.ValueKey(ns, epoch, 0, id))] = true
		nd[b.nodeOf(t, keys.ValueKey(ns, epoch, 0, id))] = true
	}
	return ids, len(s), len(nd)
}

// offNode returns the first id of "0", "1", ... whose key in keyspace ns
// lives on another node than key does (any id on a single server): a test
// that reads and writes it crosses nodes.
func offNode(t testing.TB, b backend, ns, key string) string {
	id := "0"
	epoch := b.epoch(t, ns)
	for i := 1; b.masters > 1 && b.nodeOf(t, keys.ValueKey(ns, epoch, 0, id)) == b.nodeOf(t, key); i++ {
		id = fmt.Sprint(i)
	}
	return id
}
