package ratelimit

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/redistest"
)

// The test binary starts one redis-server for the whole package (tests,
// benchmarks and the Examples, which find it through REDIS_ADDR) and, on
// first use, one 3-master cluster. Tests that kill or pause Redis start
// servers of their own.

var (
	single *redistest.Server

	clusterOnce sync.Once
	cluster     *redistest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain()) // a child process of TestSeveralProcesses
	}
	srv, err := redistest.StartE(redistest.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	single = srv
	// The Examples read REDIS_ADDR; never let them reach the machine's own
	// Redis.
	os.Setenv("REDIS_ADDR", srv.Addr)
	code := m.Run()
	_ = srv.Close()
	if cluster != nil {
		_ = cluster.Close()
	}
	if code == 0 {
		if err := noLeaks(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// noLeaks polls goleak.Find for a few seconds: a closed go-redis client
// whose dials failed keeps a probing goroutine that notices the close only
// after its 1s sleep.
func noLeaks() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sharedCluster returns the package's cluster, starting it on first use.
func sharedCluster(tb testing.TB) *redistest.Cluster {
	tb.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = redistest.StartClusterE(redistest.Options{}) })
	if clusterErr != nil {
		tb.Fatalf("start the cluster: %v", clusterErr)
	}
	return cluster
}

// backend is a Redis deployment the tests run against.
type backend struct {
	name string
	// client returns a new go-redis client with connections of its own
	// (like another process), closed when the test ends.
	client func(tb testing.TB) redis.UniversalClient
	// addrs and isCluster describe it to a child process.
	addrs     func(tb testing.TB) []string
	isCluster bool
}

var backends = []backend{
	{
		name:   "single",
		client: func(tb testing.TB) redis.UniversalClient { return single.Client(tb) },
		addrs:  func(testing.TB) []string { return []string{single.Addr} },
	},
	{
		name:      "cluster",
		client:    func(tb testing.TB) redis.UniversalClient { return sharedCluster(tb).Client(tb) },
		addrs:     func(tb testing.TB) []string { return sharedCluster(tb).Addrs() },
		isCluster: true,
	},
}

// forBackends runs f as a subtest on each backend.
func forBackends(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// testOptions are Options for tests that check decisions, not outages: a
// call bound far above any stall of a busy test machine, so every
// decision comes from Redis.
func testOptions() Options {
	return Options{Prefix: "rltest", callTimeout: 10 * time.Second}
}

// newLimiter returns a limiter over rdb with testOptions changed by opts.
func newLimiter(rdb redis.UniversalClient, opts ...func(*Options)) *Limiter {
	o := testOptions()
	for _, f := range opts {
		f(&o)
	}
	return New(rdb, o)
}

var keySeq atomic.Int64

// testKey returns a key no other test (or earlier -count run) uses.
func testKey(t testing.TB) string {
	name := strings.NewReplacer("/", ".", " ", "_", "{", "(", "}", ")").Replace(t.Name())
	return fmt.Sprintf("%s:%d:%d", name, time.Now().UnixNano(), keySeq.Add(1))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustAllow calls AllowN and fails the test on an error or a degraded
// decision.
func mustAllow(t testing.TB, lim *Limiter, key string, limit Limit, n int) Result {
	t.Helper()
	res, err := lim.AllowN(ctxT(t), key, limit, n)
	if err != nil {
		t.Fatalf("AllowN(%q, %v, %d): %v", key, limit, n, err)
	}
	if res.Degraded {
		t.Fatalf("AllowN(%q, %v, %d) = %+v: degraded, want a decision from Redis", key, limit, n, res)
	}
	return res
}

// redisNow returns the time on Redis's clock, as the scripts read it.
func redisNow(t testing.TB, rdb redis.UniversalClient, key string) time.Time {
	t.Helper()
	var now time.Time
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		// TIME goes to any node; ask the one that holds key, like the scripts.
		var node *redis.Client
		if node, err = cc.MasterForKey(ctxT(t), redisKey("rltest", key, GCRA)); err == nil {
			now, err = node.Time(ctxT(t)).Result()
		}
	} else {
		now, err = rdb.Time(ctxT(t)).Result()
	}
	if err != nil {
		t.Fatalf("TIME: %v", err)
	}
	return now
}

// commandCounter is a go-redis hook that counts dials, commands and, of
// those, script calls: a proof that a call never reached Redis.
type commandCounter struct {
	dials, commands, scripts atomic.Int64
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c.dials.Add(1)
		return next(ctx, network, addr)
	}
}

func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.commands.Add(1)
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.scripts.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.commands.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// longPeriod returns a Period of an hour or a little more whose current
// window (aligned on Redis's clock, as FixedWindow aligns it) has at least
// 10 minutes left: a fixed-window test stays inside one window.
func longPeriod(t testing.TB, rdb redis.UniversalClient) time.Duration {
	t.Helper()
	now := redisNow(t, rdb, "").UnixNano()
	for p := time.Hour; ; p += time.Minute + 7*time.Second {
		if left := p - time.Duration(now%int64(p)); left >= 10*time.Minute {
			return p
		}
	}
}
