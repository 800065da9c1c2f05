package tiered

// What freshness and the writer's own copy must not depend on: the clocks
// of app hosts, and what the codec does not store.

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestFreshnessDoesNotDependOnHostClocks(t *testing.T) {
	srv := redistest.Start(t)
	behind := readyClient(t, srv, withHooks(&testHooks{wallSkew: -65 * time.Minute}))
	ahead := readyClient(t, srv, withHooks(&testHooks{wallSkew: time.Hour}))
	reader := readyClient(t, srv)
	ctx := ctxT(t)

	// A writer 65 minutes behind: its value (TTL 1h) is fresh for everyone.
	kb := newKS(t, behind, Config[user]{Name: "cache-aside", TTL: time.Hour})
	kr := newKS(t, reader, Config[user]{Name: "cache-aside", TTL: time.Hour})
	if err := kb.Set(ctx, "a", user{Name: "v"}); err != nil {
		t.Fatal(err)
	}
	if u, err := kr.Get(ctx, "a"); err != nil || u.Name != "v" {
		t.Fatalf("a value Set a moment ago by a host 65 minutes behind: Get = %+v, %v", u, err)
	}

	// A writer an hour ahead: its value stops being fresh after its TTL,
	// not an hour later.
	db := newDB()
	db.put("b", "v1")
	cfg := Config[user]{Name: "read-through", TTL: 300 * time.Millisecond, LocalTTL: 100 * time.Millisecond, StaleWhileRevalidate: time.Hour, EarlyRefreshBeta: NoEarlyRefresh, Loader: db.load}
	ka := newKS(t, ahead, cfg)
	kr2 := newKS(t, reader, cfg)
	if err := ka.Set(ctx, "b", user{Name: "v1"}); err != nil {
		t.Fatal(err)
	}
	mustGet(t, kr2, "b")
	time.Sleep(400 * time.Millisecond) // let the TTL pass: time is what is tested here
	mustGet(t, kr2, "b")
	if s := kr2.Stats(); s.StaleServed != 1 {
		t.Fatalf("past its TTL the value of a host an hour ahead was served as fresh: %+v", s)
	}
	eventually(t, 5*time.Second, "the stale value revalidated", func() bool { return kr2.Stats().Revalidations == 1 })
}

// secretive has a field the JSON codec does not store, and a slice.
type secretive struct {
	Name   string
	Secret string `json:"-"`
	Tags   []string
}

func TestWriterHoldsWhatPeersDecode(t *testing.T) {
	srv := redistest.Start(t)
	a, b := readyClient(t, srv), readyClient(t, srv)
	ka, err := NewKeyspace(a, Config[secretive]{Name: "s", LocalTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	kb, err := NewKeyspace(b, Config[secretive]{Name: "s", LocalTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	v := secretive{Name: "n", Secret: "not stored", Tags: []string{"t1"}}
	if err := ka.Set(ctx, "1", v); err != nil {
		t.Fatal(err)
	}
	v.Tags[0] = "changed by the caller after Set"
	wa, err := ka.Get(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	wb, err := kb.Get(ctx, "1")
	if err != nil {
		t.Fatal(err)
	}
	if wa.Secret != "" || wa.Tags[0] != "t1" || wa.Name != wb.Name || wa.Secret != wb.Secret || wa.Tags[0] != wb.Tags[0] {
		t.Fatalf("the writer holds %+v, its peer %+v: they must agree, as the codec decodes", wa, wb)
	}
	if s := ka.Stats(); s.LocalHits != 1 {
		t.Fatalf("the writer's Get was not a local hit: %+v", s)
	}
}
