package tiered

// Leases, deadlines and Close: a load whose value cannot be cached gives its
// lease back; GetMany returns at its caller's deadline; an unsubscribed
// Client reads the epoch once per call; Close is bounded even when a Loader
// ignores its context.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestUncacheableLoadGivesItsLeaseBack(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c := readyClient(t, srv)
	big := strings.Repeat("x", 200)
	k := newKS(t, c, Config[user]{MaxValueSize: 64, Loader: func(_ context.Context, id string) (user, error) {
		return user{ID: id, Name: big}, nil
	}})
	ctx := ctxT(t)
	if u, err := k.Get(ctx, "a"); err != nil || u.Name != big {
		t.Fatalf("Get = %+v, %v; want the loaded value, uncached", u, err)
	}
	if m, err := k.GetMany(ctx, []string{"b", "c"}); err != nil || len(m) != 2 {
		t.Fatalf("GetMany = %v, %v", m, err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if leaseHeld(t, raw, valueKey(t, raw, "user", id)) {
			t.Fatalf("the lease of %q stays after a load too large to cache", id)
		}
		if _, ok := redisUser(t, raw, valueKey(t, raw, "user", id)); ok {
			t.Fatalf("%q was cached over MaxValueSize", id)
		}
	}
}

func TestGetManyReturnsAtItsCallersDeadline(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c := readyClient(t, srv)
	db := newDB()
	g := newGate(t)
	k := newKS(t, c, Config[user]{Loader: g.loader(db), LoadTimeout: 10 * time.Second})
	for _, id := range []string{"a", "b"} {
		db.put(id, "v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.GetMany(ctx, []string{"a", "b"})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || took > 2*time.Second {
		t.Fatalf("GetMany with a 100ms deadline returned %v after %v; want the deadline's error at once", err, took)
	}
	g.open() // the loads went on for the cache
	eventually(t, 5*time.Second, "the loads land in Redis", func() bool {
		_, okA := redisUser(t, raw, valueKey(t, raw, "user", "a"))
		_, okB := redisUser(t, raw, valueKey(t, raw, "user", "b"))
		return okA && okB
	})
}

// While the bus is not subscribed, every call reads the epoch again (a bump
// may have been missed), but once per call, not once per id.
func TestUnsubscribedClientReadsTheEpochOncePerCall(t *testing.T) {
	srv := redistest.Start(t)
	log := &tripLog{}
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	c := serverBackend(srv).client(t, log, withHooks(&testHooks{busDown: func() {
		select {
		case held <- struct{}{}:
			<-release // hold the bus down until the test ends
		default:
		}
	}}))
	t.Cleanup(func() { close(release) })
	waitReady(t, c)
	k := newKS(t, c, Config[user]{})
	ctx := ctxT(t)
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprint(i)
		if err := k.Set(ctx, ids[i], user{ID: ids[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.KillClients(t, "TYPE", "pubsub"); n != 1 {
		t.Fatalf("killed %d subscribers", n)
	}
	<-held
	if c.Ready() {
		t.Fatal("ready with the bus down")
	}
	if _, err := k.GetMany(ctx, ids[:1]); err != nil { // learns the server again
		t.Fatal(err)
	}
	log.reset()
	m, err := k.GetMany(ctx, ids)
	if err != nil || len(m) != len(ids) {
		t.Fatalf("GetMany = %d values, %v", len(m), err)
	}
	if n := log.snapshot().scriptCalls(); n != 1 {
		t.Fatalf("GetMany of %d ids with the bus down made %d epoch reads, want 1: %v", len(ids), n, log.snapshot().names())
	}
}

// A Loader that ignores its context cannot be stopped: Close gives up on it
// after the keyspace's LoadTimeout plus a second, and says so.
func TestCloseIsBoundedWhenALoaderIgnoresItsContext(t *testing.T) {
	srv := redistest.Start(t)
	core, logs := observer.New(zap.WarnLevel)
	c := readyClient(t, srv, func(o *Options) { o.Logger = zap.New(core) })
	stuck := make(chan struct{})
	entered := make(chan struct{})
	returned := make(chan struct{})
	k := newKS(t, c, Config[user]{LoadTimeout: 100 * time.Millisecond, Loader: func(context.Context, string) (user, error) {
		close(entered)
		<-stuck // ignores its context
		defer close(returned)
		return user{}, nil
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go func() { _, _ = k.Get(ctx, "a") }()
	<-entered
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	close(stuck)
	<-returned // the abandoned goroutine ends before goleak looks
	if took < closeMargin || took > 5*time.Second {
		t.Fatalf("Close took %v; want about LoadTimeout + %v", took, closeMargin)
	}
	warned := logs.FilterMessageSnippet("Close gave up").All()
	if len(warned) != 1 || !strings.Contains(fmt.Sprint(warned[0].ContextMap()["some"]), "load user/a") {
		t.Fatalf("Close logged %v; want one warning naming the load of user/a", logs.All())
	}
}
