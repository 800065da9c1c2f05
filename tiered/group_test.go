package tiered

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/keys"
)

func tenantOf(id string) string { return strings.SplitN(id, "/", 2)[0] }

// InvalidateGroup is one script call, reaches every Client and leaves other
// groups alone, also where the group's version key and its values live on
// different nodes.
func TestInvalidateGroupInOneRoundTripEverywhere(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		db := newDB()
		log := &tripLog{}
		cfg := Config[user]{Group: tenantOf, LocalTTL: time.Hour, Loader: db.load}
		p := peersOf(t, b.client(t, log), b.client(t, nil), cfg)
		ctx := ctxT(t)
		var t1, t2 []string // 20 ids in each group
		for i := 0; i < 20; i++ {
			t1 = append(t1, fmt.Sprintf("t1/%d", i))
			t2 = append(t2, fmt.Sprintf("t2/%d", i))
		}
		for _, id := range append(t1, t2...) {
			db.put(id, "old")
			if err := p.ka.Set(ctx, id, user{ID: id, Name: "old"}); err != nil {
				t.Fatal(err)
			}
			mustGet(t, p.kb, id)
		}
		verKey := keys.VersionKey("user", "t1")
		if b.masters > 1 {
			other := 0
			for _, id := range t1 {
				key, _, err := p.kb.keyOf(ctx, id)
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
		for _, id := range t1 {
			db.put(id, "new")
		}
		// Load the script into the Redis of t1's version key.
		warm := "warm-up"
		for i := 0; b.nodeOf(t, keys.VersionKey("user", warm)) != b.nodeOf(t, verKey); i++ {
			warm = fmt.Sprintf("warm-up-%d", i)
		}
		if err := p.ka.InvalidateGroup(ctx, warm); err != nil {
			t.Fatal(err)
		}
		loads := db.loads.Load()
		log.reset()
		if err := p.ka.InvalidateGroup(ctx, "t1"); err != nil {
			t.Fatal(err)
		}
		if trips := log.snapshot(); len(trips) != 1 || len(trips.cmds()) != 1 {
			t.Fatalf("InvalidateGroup made %d round trips (%v), want one script call", len(trips), trips.cmds())
		}
		for _, k := range []*Keyspace[user]{p.ka, p.kb} {
			k := k
			eventually(t, 5*time.Second, "group t1 invalidated", func() bool {
				for _, id := range t1 {
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
		for _, k := range []*Keyspace[user]{p.ka, p.kb} {
			for _, id := range t2 {
				if u := mustGet(t, k, id); u.Name != "old" {
					t.Fatalf("another group was invalidated: %+v", u)
				}
			}
		}
		if n := db.loads.Load() - loads; n != 20 {
			t.Fatalf("group t2 was reloaded: %d loads", n-20)
		}
		if v, err := b.raw(t).Get(ctx, verKey).Result(); err != nil || v == "" {
			t.Fatalf("version key %s = %q, %v", verKey, v, err)
		}
		// Old versions are still in Redis, unreachable, expiring on their own.
		if n := b.keysLike(t, "user:*:*:t1/0"); len(n) != 2 {
			t.Fatalf("versioned keys of t1/0 in Redis: %v (want old and new)", n)
		}
		if err := newKS(t, p.a, Config[user]{Name: "nogroups"}).InvalidateGroup(ctx, "x"); err == nil {
			t.Fatal("InvalidateGroup on a keyspace without groups succeeded")
		}
		if err := p.ka.InvalidateGroup(ctx, "bad\x00group"); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("invalid group: %v", err)
		}
	})
}

func TestGroupVersionSurvivesLostVersionKey(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	k := newKS(t, c, Config[user]{Group: tenantOf, LocalTTL: time.Hour})
	ctx := ctxT(t)
	if err := k.Set(ctx, "t/a", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	if err := k.InvalidateGroup(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	// Someone (maxmemory eviction, a FLUSHDB of version keys) loses the
	// version key: the next version must still be newer than every old one,
	// so the pre-bump value stays unreachable.
	if err := srv.Client(t).Del(ctx, "{user:gv:t}").Err(); err != nil {
		t.Fatal(err)
	}
	k.flush(false)
	if _, err := k.Get(ctx, "t/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the version key was lost, Get = %v; the pre-bump value came back", err)
	}
}

func TestInvalidateAllEverywhere(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newClient(t, srv), newClient(t, srv)
	waitReady(t, a, b)
	db := newDB()
	for _, cfg := range []Config[user]{{}, {Name: "grouped", Group: tenantOf}} {
		cfg.LocalTTL, cfg.Loader = time.Hour, db.load
		ka, kb := newKS(t, a, cfg), newKS(t, b, cfg)
		ctx := ctxT(t)
		ids := []string{"t1/a", "t2/b"}
		for _, id := range ids {
			db.put(id, "old")
			mustGet(t, ka, id)
			mustGet(t, kb, id)
		}
		for _, id := range ids {
			db.put(id, "new")
		}
		if err := ka.InvalidateAll(ctx); err != nil {
			t.Fatal(err)
		}
		for _, k := range []*Keyspace[user]{ka, kb} {
			k := k
			eventually(t, 5*time.Second, cfg.Name+": every id reloaded", func() bool {
				return mustGet(t, k, "t1/a").Name == "new" && mustGet(t, k, "t2/b").Name == "new"
			})
		}
	}
}

// TestHelperProcess is not a test: it is the child of TestSeparateProcesses.
// It reads commands from stdin ("get ID", "quit") and answers on stdout.
func TestHelperProcess(t *testing.T) {
	addr := os.Getenv("TIERCACHE_HELPER_REDIS")
	if addr == "" {
		return // run as a normal test: nothing to do
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	c, err := NewClient(Options{Redis: rdb})
	if err != nil {
		fmt.Println("error", err)
		return
	}
	defer c.Close()
	k, _ := NewKeyspace(c, Config[user]{Name: "user", LocalTTL: time.Hour})
	eventually(t, 10*time.Second, "child ready", c.Ready)
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] == "quit" {
			return
		}
		u, err := k.Get(context.Background(), f[1])
		st := k.Stats()
		fmt.Printf("%s %v localhits=%d\n", u.Name, err, st.LocalHits)
	}
}

func TestSeparateProcesses(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	k := newKS(t, c, Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	if err := k.Set(ctx, "1", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "TIERCACHE_HELPER_REDIS="+srv.Addr)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = io.WriteString(stdin, "quit\n")
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	out := bufio.NewScanner(stdout)
	ask := func(id string) string {
		if _, err := io.WriteString(stdin, "get "+id+"\n"); err != nil {
			t.Fatal(err)
		}
		if !out.Scan() {
			t.Fatalf("child died: %v", out.Err())
		}
		return out.Text()
	}
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("child did not start: %q", out.Text())
	}
	ask("1")
	if got := ask("1"); !strings.HasPrefix(got, "v1 <nil> localhits=1") {
		t.Fatalf("child's second read = %q, want a local hit of v1", got)
	}
	if err := k.Set(ctx, "1", user{Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the child process sees v2", func() bool {
		return strings.HasPrefix(ask("1"), "v2 ")
	})
}
