package tiered

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// aofServer is a redis-server that keeps its data across Kill and Restart,
// so a test can take Redis away and bring the same data back.
func aofServer(t *testing.T) *redistest.Server {
	return redistest.Start(t, redistest.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "always"}})
}

func TestBreakerOpensAndFailsFast(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	db.put("1", "v1")
	c := readyClient(t, srv, func(o *Options) {
		o.ReadTimeout = 100 * time.Millisecond
		o.BreakerOpenFor = 200 * time.Millisecond
	})
	k := newKS(t, c, Config[user]{Loader: db.load, DegradedLocalTTL: -1})
	mustGet(t, k, "1")

	done := make(chan struct{})
	go func() { srv.Pause(t, 2*time.Second); close(done) }()
	<-done // CLIENT PAUSE returns at once; Redis now stalls every command
	var slow, fast int
	for i := 0; i < 40 && c.Stats().BreakerState != "open"; i++ {
		k.flush(false)
		start := time.Now()
		if u := mustGet(t, k, "1"); u.Name != "v1" {
			t.Fatalf("Get during the pause = %+v", u)
		}
		if time.Since(start) >= 90*time.Millisecond {
			slow++
		}
	}
	if st := c.Stats(); st.BreakerState != "open" || st.BreakerOpens != 1 {
		t.Fatalf("breaker after %d slow Gets: %+v", slow, st)
	}
	if slow > 5 {
		t.Fatalf("%d Gets waited for Redis before the breaker opened, want at most BreakerFailures (5)", slow)
	}
	for i := 0; i < 20; i++ {
		k.flush(false)
		start := time.Now()
		mustGet(t, k, "1")
		if time.Since(start) < 50*time.Millisecond {
			fast++
		}
	}
	if fast < 15 {
		t.Fatalf("only %d of 20 Gets were fast with the breaker open", fast)
	}
	if s := k.Stats(); s.LoaderDirect == 0 || s.RedisErrors == 0 {
		t.Fatalf("degraded reads not counted: %+v", s)
	}
	// After the pause, a probe closes the breaker again.
	eventually(t, 10*time.Second, "breaker closes", func() bool {
		k.flush(false)
		mustGet(t, k, "1")
		return c.Stats().BreakerState == "closed"
	})
	if st := c.Stats(); st.Degraded <= 0 {
		t.Fatalf("time degraded not counted: %+v", st)
	}
}

func TestWritesDuringOutageAreReplayed(t *testing.T) {
	srv := aofServer(t)
	p := newPeers(t, serverBackend(srv), Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	if err := p.ka.Set(ctx, "1", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, p.kb, "1")

	srv.Kill(t)
	err := p.ka.Delete(ctx, "1")
	var op *OpError
	if !errors.As(err, &op) || op.Op != "delete" {
		t.Fatalf("Delete with Redis down: %v", err)
	}
	if st := p.a.Stats(); st.ReplayPending != 1 || st.ReplayQueued != 1 {
		t.Fatalf("the failed Delete was not queued: %+v", st)
	}
	srv.Restart(t) // the AOF brings user:1 back: the Delete is still owed
	eventually(t, 10*time.Second, "the queued Delete is replayed", func() bool {
		st := p.a.Stats()
		return st.ReplayPending == 0 && st.Replayed >= 1
	})
	raw := srv.Client(t)
	key := valueKey(t, raw, "user", "1")
	eventually(t, 5*time.Second, "user 1 is gone from Redis", func() bool {
		n, err := raw.Exists(ctx, key).Result()
		return err == nil && n == 0
	})
	waitReady(t, p.b)
	if _, err := p.kb.Get(ctx, "1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("B after recovery: %v, want ErrNotFound", err)
	}
}

func TestReplayOverflowBumpsTheKeyspaceEpoch(t *testing.T) {
	srv := aofServer(t)
	p := peersOf(t, newClient(t, srv, func(o *Options) { o.ReplayQueue = 2 }), newClient(t, srv), Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	for i := 0; i < 6; i++ {
		if err := p.ka.Set(ctx, fmt.Sprint(i), user{Name: "old"}); err != nil {
			t.Fatal(err)
		}
		mustGet(t, p.kb, fmt.Sprint(i))
	}
	epochBefore, err := srv.Client(t).Get(ctx, "{user:epoch}").Uint64()
	if err != nil {
		t.Fatal(err)
	}
	srv.Kill(t)
	for i := 0; i < 5; i++ { // 5 deletes for a queue of 2
		if err := p.ka.Delete(ctx, fmt.Sprint(i)); err == nil {
			t.Fatal("Delete succeeded with Redis down")
		}
	}
	if st := p.a.Stats(); st.ReplayOverflows != 1 {
		t.Fatalf("overflow not recorded: %+v", st)
	}
	srv.Restart(t)
	eventually(t, 10*time.Second, "the epoch is bumped", func() bool {
		e, err := srv.Client(t).Get(ctx, "{user:epoch}").Uint64()
		return err == nil && e > epochBefore
	})
	waitReady(t, p.a, p.b)
	// Every value of the keyspace is unreachable, in every process: the
	// deleted ids and the one that was not (nothing could tell them apart).
	for _, k := range []*Keyspace[user]{p.ka, p.kb} {
		k := k
		eventually(t, 5*time.Second, "all old values unreachable", func() bool {
			for i := 0; i < 6; i++ {
				if _, err := k.Get(ctx, fmt.Sprint(i)); !errors.Is(err, ErrNotFound) {
					return false
				}
			}
			return true
		})
	}
	// New writes live under the new epoch and work as before.
	if err := p.ka.Set(ctx, "new", user{Name: "fresh"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B reads the new value", func() bool {
		u, err := p.kb.Get(context.Background(), "new")
		return err == nil && u.Name == "fresh"
	})
}
