package tiered

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
)

// busChannel is the bus tests' channel, set through Options.Channel rather
// than left at the default.
const busChannel = "tc-bus"

func withBusChannel(o *Options) { o.Channel = busChannel }

// A Set in one Client evicts another's copy, also when the value and the
// channel live on different nodes; the writer ignores its own message and
// reads never publish.
func TestSetInOneClientEvictsInOthers(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		db := newDB()
		id := offNode(t, b, "user", busChannel)
		db.put(id, "v1")
		p := peersOf(t, b.client(t, nil, withBusChannel), b.client(t, nil, withBusChannel),
			Config[user]{Loader: db.load, LocalTTL: time.Hour})
		mustGet(t, p.ka, id)
		mustGet(t, p.kb, id)
		if s := p.kb.Stats(); s.LocalEntries != 1 {
			t.Fatalf("B holds %d local entries, want 1", s.LocalEntries)
		}
		// Whichever Client created the keyspace's epoch announced it: let
		// its peer apply that first.
		eventually(t, 5*time.Second, "the epoch's announcement applied", func() bool {
			return p.a.Stats().InvalidationsApplied+p.b.Stats().InvalidationsApplied == p.a.Stats().InvalidationsSent+p.b.Stats().InvalidationsSent
		})
		applied, sent := p.b.Stats().InvalidationsApplied, p.a.Stats().InvalidationsSent
		if err := p.ka.Set(ctxT(t), id, user{ID: id, Name: "v2"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "B sees v2", func() bool { return mustGet(t, p.kb, id).Name == "v2" })
		// B counts the message after acting on it: poll.
		eventually(t, 5*time.Second, "B counts one invalidation applied", func() bool { return p.b.Stats().InvalidationsApplied == applied+1 })
		eventually(t, 5*time.Second, "A ignores its own message", func() bool { return p.a.Stats().IgnoredOwn >= 1 })
		if s := p.a.Stats(); s.InvalidationsSent != sent+1 {
			t.Fatalf("A sent %d invalidations, want 1", s.InvalidationsSent-sent)
		}
		// Fills and reads never publish.
		before := p.b.Stats().InvalidationsSent
		mustGet(t, p.kb, id)
		_, _ = p.kb.Get(ctxT(t), "2x")
		if p.b.Stats().InvalidationsSent != before {
			t.Fatal("a read published an invalidation")
		}
	})
}

// A killed subscriber connection leads to a resubscription that flushes, so
// a write missed meanwhile is not served from an hour-long local copy.
func TestResubscriptionAfterKilledConnectionFlushes(t *testing.T) {
	onEveryBackend(t, func(t *testing.T, b backend) {
		db := newDB()
		id := offNode(t, b, "user", busChannel)
		db.put(id, "v1")
		downs := make(chan struct{}, 4)
		release := make(chan struct{})
		var held, released sync.Once
		hooks := &testHooks{busDown: func() {
			downs <- struct{}{}
			held.Do(func() { <-release }) // hold the first reconnect until the test allows it
		}}
		a := b.namedClient(t, "A", withBusChannel)
		c := b.namedClient(t, "B", withBusChannel, withHooks(hooks))
		t.Cleanup(func() { released.Do(func() { close(release) }) }) // before B closes
		p := peersOf(t, a, c, Config[user]{Loader: db.load, LocalTTL: time.Hour})
		mustGet(t, p.kb, id) // B caches v1 for an hour

		if n := b.killSubscriber(t, "B"); n != 1 {
			t.Fatalf("killed %d Pub/Sub connections of B, want 1", n)
		}
		<-downs
		// While B is not subscribed, A changes the value: B cannot hear it.
		db.put(id, "v2")
		if err := p.ka.Set(ctxT(t), id, user{ID: id, Name: "v2"}); err != nil {
			t.Fatal(err)
		}
		if p.b.Ready() {
			t.Fatal("B reports ready while its bus is down")
		}
		released.Do(func() { close(release) })
		eventually(t, 10*time.Second, "B resubscribes", func() bool { return p.b.Stats().Resubscriptions == 1 && p.b.Ready() })
		if got := mustGet(t, p.kb, id); got.Name != "v2" {
			t.Fatalf("after resubscription B serves %+v, want v2", got)
		}
	})
}

func TestRedisRestartLeavesNoStaleLocalValue(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	db.put("1", "v1")
	p := newPeers(t, serverBackend(srv), Config[user]{Loader: db.load, LocalTTL: time.Hour})
	mustGet(t, p.kb, "1")

	srv.Kill(t)
	eventually(t, 5*time.Second, "B notices", func() bool { return !p.b.Ready() })
	db.put("1", "v2")
	// While Redis is down B must not serve its hour-long local copy.
	if got := mustGet(t, p.kb, "1"); got.Name != "v2" {
		t.Fatalf("with Redis down B served %+v, want the loader's v2", got)
	}
	srv.Restart(t)
	eventually(t, 10*time.Second, "A can write again", func() bool {
		return p.ka.Set(ctxT(t), "1", user{ID: "1", Name: "v2"}) == nil
	})
	waitReady(t, p.b)
	if got := mustGet(t, p.kb, "1"); got.Name != "v2" {
		t.Fatalf("after restart B serves %+v, want v2", got)
	}
	if s := p.b.Stats(); s.Resubscriptions < 1 || s.BusDisconnects < 1 {
		t.Fatalf("B's bus stats after a restart: %+v", s)
	}
}

func TestSlowSubscriberIsDisconnectedAndFlushes(t *testing.T) {
	srv := redistest.Start(t)
	srv.ConfigSet(t, "client-output-buffer-limit", "pubsub 256kb 128kb 1")
	db := newDB()
	db.put("1", "v1")
	block := make(chan struct{})
	var blocked sync.Once
	entered := make(chan struct{})
	hooks := &testHooks{onMessage: func(*invalidation.Message) {
		blocked.Do(func() { close(entered); <-block })
	}}
	p := peersOf(t, newClient(t, srv), newClientHooks(t, srv, hooks), Config[user]{Loader: db.load, LocalTTL: time.Hour})
	mustGet(t, p.kb, "1")

	// B's handler blocks on the first message; A floods the channel until
	// Redis drops B for exceeding the pubsub output buffer limit.
	ctx := ctxT(t)
	if err := p.ka.Delete(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	<-entered
	long := strings.Repeat("k", 1000)
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", long, i)
	}
	eventually(t, 20*time.Second, "Redis disconnects the slow subscriber", func() bool {
		for i := 0; i < 20; i++ {
			if err := p.ka.Delete(ctx, ids...); err != nil {
				t.Fatal(err)
			}
		}
		for _, cl := range srv.ClientList(t) {
			if strings.Contains(cl["flags"], "P") && cl["omem"] != "0" {
				return false // still buffered: not yet over the limit
			}
		}
		return len(pubsubClients(t, srv)) < 2
	})
	db.put("1", "v2")
	if err := p.ka.Set(ctx, "1", user{ID: "1", Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	close(block)
	eventually(t, 10*time.Second, "B resubscribes", func() bool { return p.b.Stats().Resubscriptions >= 1 && p.b.Ready() })
	if got := mustGet(t, p.kb, "1"); got.Name != "v2" {
		t.Fatalf("slow subscriber serves %+v after catching up, want v2", got)
	}
}

func pubsubClients(t testing.TB, srv *redistest.Server) []map[string]string {
	var out []map[string]string
	for _, cl := range srv.ClientList(t) {
		if strings.Contains(cl["flags"], "P") {
			out = append(out, cl)
		}
	}
	return out
}

func TestFillRacingInvalidationDoesNotLand(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	db.put("1", "v1")
	atFill := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hooks := &testHooks{beforeLocalFill: func(ks, id string) {
		once.Do(func() { close(atFill); <-release })
	}}
	p := peersOf(t, newClient(t, srv), newClientHooks(t, srv, hooks), Config[user]{Loader: db.load, LocalTTL: time.Hour})
	mustGet(t, p.ka, "1") // v1 in Redis

	got := make(chan user, 1)
	go func() { u, _ := p.kb.Get(context.Background(), "1"); got <- u }()
	<-atFill // B read v1 from Redis and is about to fill its local tier
	// What A announced before (the keyspace's epoch) is applied first.
	eventually(t, 5*time.Second, "B applies A's earlier messages", func() bool {
		return p.b.Stats().InvalidationsApplied == p.a.Stats().InvalidationsSent
	})
	applied := p.b.Stats().InvalidationsApplied
	db.put("1", "v2")
	if err := p.ka.Set(ctxT(t), "1", user{ID: "1", Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B applies the invalidation", func() bool { return p.b.Stats().InvalidationsApplied > applied })
	close(release)
	<-got // v1: true when it was read
	if s := p.kb.Stats(); s.LocalFillsSkipped != 1 {
		t.Fatalf("LocalFillsSkipped = %d, want 1", s.LocalFillsSkipped)
	}
	if u := mustGet(t, p.kb, "1"); u.Name != "v2" {
		t.Fatalf("B serves %+v after the invalidation, want v2", u)
	}
}

func TestFlushRacingFillLeavesNoPreFlushData(t *testing.T) {
	srv := redistest.Start(t)
	atFill := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	hooks := &testHooks{beforeLocalFill: func(ks, id string) {
		once.Do(func() { close(atFill); <-release })
	}}
	c := newClientHooks(t, srv, hooks)
	waitReady(t, c)
	k := newKS(t, c, Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	if err := k.Set(ctx, "1", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	k.flush(false)
	done := make(chan struct{})
	go func() { _, _ = k.Get(context.Background(), "1"); close(done) }()
	<-atFill
	if err := c.FlushLocal(ctx); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	if n := k.Stats().LocalEntries; n != 0 {
		t.Fatalf("a fill that started before the flush landed: %d local entries", n)
	}
}

func TestOwnSetDeleteGetNeverReturnsOldValue(t *testing.T) {
	srv := redistest.Start(t)
	p := newPeers(t, serverBackend(srv), Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a peer writing the same key concurrently
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = p.kb.Set(ctx, "k", user{Name: fmt.Sprintf("b-%d", i)})
		}
	}()
	for i := 0; i < 200; i++ {
		if err := p.ka.Set(ctx, "k", user{Name: fmt.Sprintf("a-%d", i)}); err != nil {
			t.Fatal(err)
		}
		if err := p.ka.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		u, err := p.ka.Get(ctx, "k")
		if err == nil && strings.HasPrefix(u.Name, "a-") {
			t.Fatalf("iteration %d: Get after own Set+Delete returned own old value %q", i, u.Name)
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestNegativeEntryInvalidatedWhenCreatedElsewhere(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	p := newPeers(t, serverBackend(srv), Config[user]{Loader: db.load, NegativeTTL: time.Hour, LocalTTL: time.Hour})
	if _, err := p.kb.Get(ctxT(t), "n"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get: %v", err)
	}
	if _, err := p.kb.Get(ctxT(t), "n"); !errors.Is(err, ErrNotFound) || p.kb.Stats().NegativeHits != 1 {
		t.Fatalf("negative entry not cached: %v %+v", err, p.kb.Stats())
	}
	db.put("n", "born")
	if err := p.ka.Set(ctxT(t), "n", user{ID: "n", Name: "born"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "B sees the new key", func() bool {
		u, err := p.kb.Get(ctxT(t), "n")
		return err == nil && u.Name == "born"
	})
}

func TestTwentyClientsInvalidateEachOther(t *testing.T) {
	srv := redistest.Start(t)
	const n = 20
	cs := make([]*Client, n)
	ks := make([]*Keyspace[user], n)
	for i := range cs {
		cs[i] = newClient(t, srv)
		ks[i] = newKS(t, cs[i], Config[user]{LocalTTL: time.Hour})
	}
	waitReady(t, cs...)
	ctx := ctxT(t)
	nodes := map[string]bool{}
	for i := range cs {
		nodes[cs[i].Node()] = true
		if err := ks[i].Set(ctx, fmt.Sprint(i), user{Name: "old"}); err != nil {
			t.Fatal(err)
		}
	}
	if len(nodes) != n {
		t.Fatalf("%d distinct node ids for %d clients", len(nodes), n)
	}
	for i := range cs { // everyone caches everyone's key
		for j := range cs {
			if u := mustGet(t, ks[i], fmt.Sprint(j)); u.Name != "old" {
				t.Fatalf("client %d key %d = %+v", i, j, u)
			}
		}
	}
	barrier := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cs {
		i := i
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-barrier
			if err := ks[i].Set(ctx, fmt.Sprint(i), user{Name: "new"}); err != nil {
				t.Error(err)
			}
		}()
	}
	close(barrier)
	wg.Wait()
	for i := range cs {
		for j := range cs {
			i, j := i, j
			eventually(t, 5*time.Second, fmt.Sprintf("client %d sees key %d", i, j), func() bool {
				return mustGet(t, ks[i], fmt.Sprint(j)).Name == "new"
			})
		}
	}
}

func TestMalformedMessagesAreCountedAndIgnored(t *testing.T) {
	srv := redistest.Start(t)
	p := newPeers(t, serverBackend(srv), Config[user]{LocalTTL: time.Hour})
	ctx := ctxT(t)
	raw := srv.Client(t)
	for _, m := range []string{"", "hello", "\xc5\x09future-version", "\xc5\x01short", string([]byte{0xc5, 1})} {
		if err := raw.Publish(ctx, defaultChannel, m).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "B counts 5 malformed messages", func() bool { return p.b.Stats().IgnoredMalformed == 5 })
	// The bus still works.
	if err := p.kb.Set(ctx, "1", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, p.ka, "1")
	if err := p.kb.Set(ctx, "1", user{Name: "v2"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "A sees v2", func() bool { return mustGet(t, p.ka, "1").Name == "v2" })
}

func TestNothingServedLocallyWhileBusIsDown(t *testing.T) {
	srv := redistest.Start(t)
	srv.Kill(t)
	db := newDB()
	db.put("1", "v1")
	c := newClient(t, srv)
	// With degraded local caching off, nothing at all is served locally
	// before the bus subscribes.
	k := newKS(t, c, Config[user]{Loader: db.load, LocalTTL: time.Hour, DegradedLocalTTL: -1})
	for i := 0; i < 3; i++ {
		if u := mustGet(t, k, "1"); u.Name != "v1" {
			t.Fatalf("Get = %+v", u)
		}
	}
	if s := k.Stats(); s.LocalHits != 0 || db.loads.Load() != 3 || s.LoaderDirect != 3 {
		t.Fatalf("served locally before the bus ever subscribed: %+v, loads %d", s, db.loads.Load())
	}
	if c.Ready() {
		t.Fatal("Ready with no Redis")
	}
	// With the default, a value loaded during the outage is served from
	// the local tier for DegradedLocalTTL only, sparing the database.
	db2 := newDB()
	db2.put("1", "v1")
	kd := newKS(t, c, Config[user]{Name: "degraded", Loader: db2.load, LocalTTL: time.Hour, DegradedLocalTTL: 300 * time.Millisecond})
	for i := 0; i < 3; i++ {
		mustGet(t, kd, "1")
	}
	if n := db2.loads.Load(); n != 1 {
		t.Fatalf("degraded reads loaded %d times, want 1", n)
	}
	eventually(t, 5*time.Second, "the degraded entry expires", func() bool {
		mustGet(t, kd, "1")
		return db2.loads.Load() == 2
	})
}

func TestPausedRedisStopsLocalServingWithinBusTimeout(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	db.put("1", "v1")
	c := readyClient(t, srv, func(o *Options) { o.BusTimeout = 400 * time.Millisecond })
	k := newKS(t, c, Config[user]{Loader: db.load, LocalTTL: time.Hour})
	mustGet(t, k, "1")
	go srv.Pause(t, 3*time.Second)
	start := time.Now()
	eventually(t, 3*time.Second, "local serving stops", func() bool { return !c.Ready() })
	if d := time.Since(start); d > 400*time.Millisecond+time.Second {
		t.Fatalf("local entries served for %v after Redis stopped answering (BusTimeout 400ms)", d)
	}
	hits := k.Stats().LocalHits
	if u := mustGet(t, k, "1"); u.Name != "v1" {
		t.Fatalf("Get during pause = %+v", u)
	}
	if k.Stats().LocalHits != hits {
		t.Fatal("a local entry was served while the bus was silent")
	}
	waitReady(t, c)
}
