package tiered

// When Redis forgets, rewinds or fills up: group versions and epochs are
// never handed out twice, every process converges on the current ones, and
// no value an acknowledged write replaced comes back.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/keys"
)

// A version or epoch key that Redis loses (evicted under an allkeys policy,
// flushed) is re-created by the next reader, announced, and every process
// moves to it: a writer still holding the old one does not go on writing
// where nobody reads.
func TestLostMetadataConverges(t *testing.T) {
	for _, fault := range []string{"evicted version key", "evicted epoch key", "FLUSHALL"} {
		t.Run(fault, func(t *testing.T) {
			srv := redistest.Start(t)
			raw := srv.Client(t)
			cfg := Config[user]{Group: tenantOf, LocalTTL: time.Hour} // cache-aside: a lost write shows as a miss
			p := newPeers(t, serverBackend(srv), cfg)
			ctx := ctxT(t)
			if err := p.ka.Set(ctx, "t/a", user{Name: "v1"}); err != nil {
				t.Fatal(err)
			}
			if got := mustGet(t, p.kb, "t/a"); got.Name != "v1" {
				t.Fatalf("B = %+v", got)
			}
			var err error
			switch fault {
			case "evicted version key":
				err = raw.Del(ctx, keys.VersionKey("user", "t")).Err()
			case "evicted epoch key":
				err = raw.Del(ctx, keys.EpochKey("user")).Err()
			default:
				err = raw.FlushAll(ctx).Err()
			}
			if err != nil {
				t.Fatal(err)
			}
			// A process that knows nothing yet reads first and re-creates it.
			c := readyClient(t, srv)
			kc := newKS(t, c, cfg)
			if _, err := kc.Get(ctx, "t/a"); fault == "FLUSHALL" && !errors.Is(err, ErrNotFound) {
				t.Fatalf("C after FLUSHALL: %v, want ErrNotFound", err)
			}
			for i := 0; ; i++ {
				// A writes with what it holds; every reader must see it
				// once A has heard of the re-creation.
				if err := p.ka.Set(ctx, "t/a", user{Name: "v" + strconv.Itoa(i+2)}); err != nil {
					t.Fatal(err)
				}
				u1, err1 := p.kb.Get(ctx, "t/a")
				u2, err2 := kc.Get(ctx, "t/a")
				if err1 == nil && err2 == nil && u1.Name == u2.Name && u1.Name == "v"+strconv.Itoa(i+2) {
					break
				}
				if i == 200 {
					t.Fatalf("no convergence: B %+v %v, C %+v %v after A's Set", u1, err1, u2, err2)
				}
				time.Sleep(5 * time.Millisecond) // pacing the writes, not synchronisation
			}
		})
	}
}

// A version that ran ahead of the server's clock and whose key was then lost
// is not handed out again by the Client that knew it: the values written
// under it stay unreachable.
func TestLostVersionAheadOfTheClockIsNotReused(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	c := readyClient(t, srv)
	k := newKS(t, c, Config[user]{Group: tenantOf, LocalTTL: time.Hour})
	ctx := ctxT(t)
	now, err := raw.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	ahead := uint64(now.Add(time.Hour).UnixMicro())
	if err := raw.Set(ctx, keys.VersionKey("user", "t"), ahead, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := k.Set(ctx, "t/a", user{Name: "under the version ahead"}); err != nil {
		t.Fatal(err)
	}
	if got := keyOf(t, k, "t/a"); !strings.Contains(got, fmt.Sprint(ahead)) {
		t.Fatalf("key %s is not under version %d", got, ahead)
	}
	if err := raw.Del(ctx, keys.VersionKey("user", "t")).Err(); err != nil {
		t.Fatal(err)
	}
	k.flush(false)
	if u, err := k.Get(ctx, "t/a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after the version key was lost Get = %+v, %v: a version was handed out twice", u, err)
	}
}

// fillMemory fills srv's memory and makes it refuse new data
// (maxmemory-policy noeviction).
func fillMemory(t *testing.T, srv *redistest.Server) {
	t.Helper()
	raw := srv.Client(t)
	ctx := ctxT(t)
	srv.ConfigSet(t, "maxmemory-policy", "noeviction")
	if err := raw.Eval(ctx, "for i = 1, 20000 do redis.call('SET', 'fill:' .. i, string.rep('x', 100)) end return 1", nil).Err(); err != nil {
		t.Fatal(err)
	}
	srv.ConfigSet(t, "maxmemory", "1mb")
	if err := raw.Set(ctx, "probe", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET on the full server: %v, want OOM", err)
	}
}

// Under maxmemory with noeviction every invalidation still lands: a group
// bump, a keyspace bump, and a Set whose value Redis refuses (the old value
// is deleted instead); no reader is served the replaced value.
func TestInvalidationsLandWhenRedisIsFull(t *testing.T) {
	srv := redistest.Start(t)
	db := newDB()
	p := newPeers(t, serverBackend(srv), Config[user]{Group: tenantOf, Loader: db.load, LocalTTL: time.Hour})
	ctx := ctxT(t)
	for _, id := range []string{"t/a", "u/b", "v/c"} {
		db.put(id, "old")
		mustGet(t, p.ka, id)
		mustGet(t, p.kb, id)
	}
	fillMemory(t, srv)
	for _, id := range []string{"t/a", "u/b", "v/c"} {
		db.put(id, "new")
	}
	if err := p.ka.InvalidateGroup(ctx, "t"); err != nil {
		t.Fatalf("InvalidateGroup on a full Redis: %v", err)
	}
	err := p.ka.Set(ctx, "u/b", user{ID: "u/b", Name: "new"})
	var op *OpError
	if !errors.As(err, &op) || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("Set on a full Redis: %v, want an error naming OOM", err)
	}
	if st := p.a.Stats(); st.ReplayPending != 0 {
		t.Fatalf("a refused Set was queued: %+v (its invalidation was published)", st)
	}
	eventually(t, 5*time.Second, "B drops t/a and u/b", func() bool {
		return mustGet(t, p.kb, "t/a").Name == "new" && mustGet(t, p.kb, "u/b").Name == "new"
	})
	if err := p.ka.InvalidateAll(ctx); err != nil {
		t.Fatalf("InvalidateAll on a full Redis: %v", err)
	}
	for _, k := range []*Keyspace[user]{p.ka, p.kb} {
		eventually(t, 5*time.Second, "every value replaced", func() bool {
			return mustGet(t, k, "v/c").Name == "new" && mustGet(t, k, "t/a").Name == "new"
		})
	}
}

// A Redis that restarts from an older snapshot brings back values that
// acknowledged writes had replaced. Once each Client has resubscribed, none
// is served: the keyspace's epoch is renewed under the new incarnation.
func TestRestartFromAnOlderSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	db := newDB()
	p := newPeers(t, serverBackend(srv), Config[user]{Loader: db.load, LocalTTL: time.Hour})
	ctx := ctxT(t)
	for i := 0; i < 20; i++ {
		id := fmt.Sprint(i)
		db.put(id, "v1")
		mustGet(t, p.ka, id)
		mustGet(t, p.kb, id)
	}
	if err := raw.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		id := fmt.Sprint(i)
		u := db.put(id, "v2")
		if err := p.ka.Set(ctx, id, u); err != nil { // acknowledged
			t.Fatal(err)
		}
	}
	srv.Restart(t) // from the snapshot: every value is v1 again
	restarted := time.Now()
	if n, err := raw.Exists(ctx, valueKey(t, raw, "user", "3")).Result(); err != nil || n != 1 {
		t.Fatalf("the snapshot did not bring the old value back (EXISTS = %d, %v): the test tests nothing", n, err)
	}
	eventually(t, 10*time.Second, "both Clients resubscribed", func() bool {
		return p.a.Stats().Resubscriptions >= 1 && p.b.Stats().Resubscriptions >= 1 && p.a.Ready() && p.b.Ready()
	})
	for _, k := range []*Keyspace[user]{p.ka, p.kb} {
		for i := 0; i < 20; i++ {
			if u := mustGet(t, k, fmt.Sprint(i)); u.Name != "v2" {
				t.Fatalf("after the restart %s serves %+v, which an acknowledged Set replaced", k.client.Node()[:6], u)
			}
		}
	}
	t.Logf("both Clients resubscribed and serve the acknowledged values %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if st := p.a.Stats(); st.ServerRewinds != 1 {
		t.Fatalf("ServerRewinds = %d, want 1", st.ServerRewinds)
	}
}

// A restart that does not drop this Client's bus connection (on Redis
// Cluster, another master failing over) is found by the periodic check.
func TestServerCheckRenewsEpochs(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv, func(o *Options) { o.ServerCheck = 20 * time.Millisecond })
	k := newKS(t, c, Config[user]{})
	ctx := ctxT(t)
	if err := k.Set(ctx, "a", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	before := keyOf(t, k, "a")
	// What a failover elsewhere looks like from here: the data was written
	// under an incarnation the server no longer has, and the bus stays up.
	if err := srv.Client(t).Set(ctx, keys.IncarnationKey(keys.EpochKey("user")), "an/older", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.server.mu.Lock()
	c.server.incarnation, c.server.seen = "an/older", "an/older"
	c.server.mu.Unlock()
	eventually(t, 5*time.Second, "the check sees the change", func() bool { return c.Stats().ServerRewinds == 1 })
	eventually(t, 5*time.Second, "the epoch renewed", func() bool { return keyOf(t, k, "a") != before })
	if _, err := k.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the value written before the change is still reachable: %v", err)
	}
}

// Ids may contain ':': no id reaches the key of another id, before or after
// an epoch bump, with or without groups.
func TestIdsNeverShareAKey(t *testing.T) {
	srv := redistest.Start(t)
	c := readyClient(t, srv)
	for _, cfg := range []Config[user]{{Name: "flat"}, {Name: "grouped", Group: func(id string) string { return "g" }}} {
		k := newKS(t, c, cfg)
		ctx := ctxT(t)
		epoch, err := k.currentEpoch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{"x", "0:x", "0:0:x", ":x", "x:", "e1:x", "v1:x", fmt.Sprintf("%d:0:x", epoch), fmt.Sprintf("%d:x", epoch+1), fmt.Sprintf("%d:0:x", epoch+1)}
		for round := 0; round < 2; round++ {
			for _, id := range ids {
				if err := k.Set(ctx, id, user{ID: id}); err != nil {
					t.Fatal(err)
				}
			}
			k.flush(false)
			for _, id := range ids {
				if u := mustGet(t, k, id); u.ID != id {
					t.Fatalf("%s: Get(%q) = the value of %q", cfg.Name, id, u.ID)
				}
			}
			if err := k.InvalidateAll(ctx); err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if _, err := k.Get(ctx, id); !errors.Is(err, ErrNotFound) {
					t.Fatalf("%s: after InvalidateAll Get(%q) = %v", cfg.Name, id, err)
				}
			}
		}
	}
}

// A write made with an epoch that was renewed elsewhere a moment before (the
// writer had not heard of it yet) went where no reader looks, while a reader
// had filled the new key from the source as it was before the write. The
// writer repairs it when it hears of the new epoch.
func TestWriteWithAnOutdatedEpochIsRepaired(t *testing.T) {
	srv := redistest.Start(t)
	raw := srv.Client(t)
	db := newDB()
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	t.Cleanup(release)
	a := readyClient(t, srv, withHooks(&testHooks{onMessage: func(m *invalidation.Message) {
		if m.Kind == invalidation.KindBump {
			<-hold // A hears of the new epoch only when the test says
		}
	}}))
	b := readyClient(t, srv)
	cfg := Config[user]{Loader: db.load, LocalTTL: time.Hour}
	ka, kb := newKS(t, a, cfg), newKS(t, b, cfg)
	ctx := ctxT(t)
	db.put("x", "v1")
	mustGet(t, ka, "x")
	mustGet(t, kb, "x")
	if err := raw.Del(ctx, keys.EpochKey("user")).Err(); err != nil { // evicted
		t.Fatal(err)
	}
	kb.flush(true)
	if u := mustGet(t, kb, "x"); u.Name != "v1" { // B re-creates the epoch and fills v1 under it
		t.Fatalf("B = %+v", u)
	}
	u2 := db.put("x", "v2")
	if err := ka.Set(ctx, "x", u2); err != nil { // with the old epoch: A has not heard
		t.Fatal(err)
	}
	release()
	eventually(t, 5*time.Second, "B serves the write", func() bool { return mustGet(t, kb, "x").Name == "v2" })
	if s := ka.Stats(); s.WritesRepaired != 1 {
		t.Fatalf("WritesRepaired = %d, want 1", s.WritesRepaired)
	}
}
