package redistest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestClusterStartFailover(t *testing.T) {
	waitDialers(t)
	start := time.Now()
	c := StartCluster(t)
	t.Logf("cluster of %d nodes up in %v", len(c.Addrs()), time.Since(start).Round(time.Millisecond))
	masters := c.Masters(t)
	if len(masters) != 3 {
		t.Fatalf("masters = %v; want 3", masters)
	}
	cc := c.Client(t)
	ctx := ctxT(t)

	// Keys on many slots, every master among them; NodeForSlot agrees with
	// the server's CLUSTER KEYSLOT and with where the client sent them.
	owners := map[string]bool{}
	for i := 0; i < 50; i++ {
		k := "k" + strconv.Itoa(i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", k, err)
		}
		addr := c.NodeForSlot(t, int(slot))
		owners[addr] = true
		direct := redis.NewClient(&redis.Options{Addr: addr})
		got, err := direct.Get(ctx, k).Result()
		_ = direct.Close()
		if err != nil || got != strconv.Itoa(i) {
			t.Fatalf("GET %s on its owner %s = %q, %v", k, addr, got, err)
		}
	}
	if len(owners) != 3 {
		t.Fatalf("50 keys landed on %d masters; want 3", len(owners))
	}

	// Kill the owner of k0 once its replica has the write, and wait for
	// the replica to take over with the data.
	slot, _ := cc.ClusterKeySlot(ctx, "k0").Result()
	victim := c.NodeForSlot(t, int(slot))
	waitReplicated(t, victim)
	c.KillMaster(t, victim)
	took := c.WaitFailover(t)
	t.Logf("failover of %s took %v", victim, took.Round(time.Millisecond))
	after := c.Masters(t)
	if len(after) != 3 || slices.Contains(after, victim) {
		t.Fatalf("masters after failover = %v; want 3 without %s", after, victim)
	}
	if owner := c.NodeForSlot(t, int(slot)); owner == victim {
		t.Fatalf("slot %d still served by the dead %s", slot, owner)
	}
	// A new client reads the replicated write from the new master at once.
	// (An existing go-redis ClusterClient keeps dialling the dead master
	// until its next periodic state reload, go-redis issue #3979.)
	ctx = ctxT(t)
	fresh := c.Client(t)
	if got, err := fresh.Get(ctx, "k0").Result(); err != nil || got != "0" {
		t.Fatalf("GET k0 after failover = %q, %v; want 0", got, err)
	}
	if n := c.KillClients(t, "TYPE", "normal"); n < 2 {
		t.Fatalf("KillClients on the cluster killed %d connections; want the test clients'", n)
	}
}

// waitReplicated waits until the replicas of the master at addr have every
// write the master acknowledged (WAIT).
func waitReplicated(t *testing.T, addr string) {
	t.Helper()
	reply, err := adminDo(addr, "wait", 1, 5000)
	if n, ok := reply.(int64); err != nil || !ok || n < 1 {
		t.Fatalf("WAIT on %s = %v, %v; want 1 replica", addr, reply, err)
	}
}

// Without redis-cli there is no cluster, and the error says how to get it;
// nothing is started.
func TestStartClusterWithoutRedisCLI(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("%s", notInstalledMsg)
	}
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "redis-server")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if c, err := startCluster(Options{}); !errors.Is(err, ErrCLINotInstalled) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("startCluster without redis-cli: %v; want ErrCLINotInstalled", err)
	}
}

func TestSentinelStartFailover(t *testing.T) {
	waitDialers(t)
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("master, replica and %d sentinels up in %v", len(s.SentinelAddrs()), time.Since(start).Round(time.Millisecond))
	ctx := ctxT(t)
	rdb := s.FailoverClient(t)
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	old := s.MasterAddr(t)
	waitReplicated(t, old)

	s.KillMaster(t)
	took := s.WaitFailover(t)
	t.Logf("sentinel failover took %v", took.Round(time.Millisecond))
	if now := s.MasterAddr(t); now == old {
		t.Fatalf("master still %s after failover", old)
	}
	// The failover client follows the new master by itself.
	ctx = ctxT(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := rdb.Get(ctx, "k").Result()
		if err == nil && got == "v" {
			if err := rdb.Set(ctx, "k", "w", 0).Err(); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("failover client after failover: GET = %q, %v", got, err)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// waitDialers waits, as the test ends, for go-redis's background redials of
// killed servers to see their pools closed: each sleeps a second between
// tries, longer than TestMain's leak check waits.
func waitDialers(t *testing.T) {
	t.Cleanup(func() {
		buf := make([]byte, 1<<20)
		deadline := time.Now().Add(5 * time.Second)
		for strings.Contains(string(buf[:runtime.Stack(buf, true)]), "(*ConnPool).tryDial") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	})
}
