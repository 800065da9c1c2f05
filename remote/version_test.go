package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/keys"
)

// serverUs returns the server's clock in Unix microseconds.
func (e *env) serverUs() uint64 {
	e.t.Helper()
	tm, err := e.rdb.Time(e.ctx).Result()
	if err != nil {
		e.t.Fatalf("TIME: %v", err)
	}
	return uint64(tm.UnixMicro())
}

var testNode = invalidation.NodeID{0xC5, 0xFF, 1, 2, 3}

// bumpPrefix is the message prefix package tiered passes with a version.
func bumpPrefix(t *testing.T, group string) []byte {
	t.Helper()
	p, err := invalidation.Publisher{Node: testNode}.BumpPrefix("ns", group)
	if err != nil {
		t.Fatalf("BumpPrefix: %v", err)
	}
	return p
}

// checkBumpMessage checks that msg is prefix + uvarint(v) and that it decodes
// as a bump of group to v.
func checkBumpMessage(t *testing.T, msg []byte, group string, v uint64) {
	t.Helper()
	if want := binary.AppendUvarint(bytes.Clone(bumpPrefix(t, group)), v); !bytes.Equal(msg, want) {
		t.Fatalf("bump message = % x; want % x", msg, want)
	}
	m, err := invalidation.Decode(msg)
	if err != nil {
		t.Fatalf("Decode of bump message % x: %v", msg, err)
	}
	if m.Kind != invalidation.KindBump || m.Node != testNode || m.Keyspace != "ns" ||
		len(m.Keys) != 1 || m.Keys[0] != group || len(m.Versions) != 1 || m.Versions[0] != v {
		t.Fatalf("decoded bump = %+v; want bump of ns/%s to %d", m, group, v)
	}
}

func TestVersionIsCreatedOnceAndPublished(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	key := keys.VersionKey("ns", "g")
	ver := Version{Key: key, Prefix: bumpPrefix(t, "g")}
	before := e.serverUs()
	r, err := e.store.Version(e.ctx, ver)
	v := r.Version
	after := e.serverUs()
	if err != nil || !r.Created || v < before || v > after {
		t.Fatalf("new version = %d, %v; want the server's clock in µs, within [%d, %d]", v, err, before, after)
	}
	if got := e.get(key); got != strconv.FormatUint(v, 10) {
		t.Fatalf("version key = %q; want %d in decimal", got, v)
	}
	checkBumpMessage(t, sub.next(), "g", v) // every process learns it
	for i := 0; i < 3; i++ {
		if again, err := e.store.Version(e.ctx, ver); err != nil || again.Version != v || again.Created {
			t.Fatalf("Version again = %+v, %v; want %d (stable)", again, err, v)
		}
	}
	e.set(key, "42", 0)
	if got, err := e.store.Version(e.ctx, ver); err != nil || got.Version != 42 {
		t.Fatalf("Version of a preset key = %+v, %v; want 42", got, err)
	}
	e.set(key, "not a number", 0)
	if got, err := e.store.Version(e.ctx, ver); err != nil || got.Version <= v {
		t.Fatalf("Version over garbage = %d, %v; want a new one above %d", got.Version, err, v)
	} else {
		checkBumpMessage(t, sub.next(), "g", got.Version)
	}
	sub.expect()
}

// A version, once handed out, is never handed out again: not when bumps ran
// ahead of the clock and the key was then lost, not when the caller knows a
// larger one than the server's clock.
func TestVersionsNeverRepeat(t *testing.T) {
	e := newEnv(t)
	key := keys.VersionKey("ns", "g")
	ver := Version{Key: key, Prefix: bumpPrefix(t, "g")}
	ahead := e.serverUs() + uint64(time.Hour/time.Microsecond)
	e.set(key, strconv.FormatUint(ahead, 10), 0)
	seen := map[uint64]bool{ahead: true}
	highest := ahead
	for i := 0; i < 50; i++ { // many bumps within the same microseconds
		ver.Floor = highest
		v, err := e.store.Bump(e.ctx, ver)
		if err != nil || seen[v] || v <= highest {
			t.Fatalf("Bump %d = %d, %v; want a new version above %d", i, v, err, highest)
		}
		seen[v], highest = true, v
	}
	if err := e.rdb.Del(e.ctx, key).Err(); err != nil { // evicted, flushed
		t.Fatal(err)
	}
	ver.Floor = highest
	r, err := e.store.Version(e.ctx, ver)
	if err != nil || r.Version <= highest {
		t.Fatalf("Version after the key was lost = %d, %v; want above every version handed out (%d)", r.Version, err, highest)
	}
}

func TestEpochRenewedUnderAnotherIncarnation(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	key := keys.EpochKey("ns")
	epoch := Version{Key: key, IncarnationKey: keys.IncarnationKey(key), Incarnation: "run1/repl1", Prefix: bumpPrefix(t, "")}
	r1, err := e.store.Version(e.ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	v1 := r1.Version
	checkBumpMessage(t, sub.next(), "", v1)
	if got := e.get(keys.IncarnationKey(key)); got != "run1/repl1" {
		t.Fatalf("incarnation key = %q", got)
	}
	if again, err := e.store.Version(e.ctx, epoch); err != nil || again.Version != v1 {
		t.Fatalf("same incarnation: epoch %d, %v; want %d", again.Version, err, v1)
	}
	epoch.Incarnation = "run2/repl2" // a restart, a failover
	r2, err := e.store.Version(e.ctx, epoch)
	v2 := r2.Version
	if err != nil || v2 <= v1 {
		t.Fatalf("another incarnation: epoch %d, %v; want a new one above %d", v2, err, v1)
	}
	checkBumpMessage(t, sub.next(), "", v2)
	if again, err := e.store.Version(e.ctx, epoch); err != nil || again.Version != v2 {
		t.Fatalf("the next Client of the new incarnation: epoch %d, %v; want %d", again.Version, err, v2)
	}
	// A bump records its incarnation: the next checking read keeps it.
	bumped, err := e.store.Bump(e.ctx, Version{Key: key, IncarnationKey: keys.IncarnationKey(key), Incarnation: "run3/repl3", Floor: v2, Prefix: epoch.Prefix})
	if err != nil || bumped <= v2 {
		t.Fatalf("Bump = %d, %v", bumped, err)
	}
	checkBumpMessage(t, sub.next(), "", bumped)
	epoch.Incarnation = "run3/repl3"
	if again, err := e.store.Version(e.ctx, epoch); err != nil || again.Version != bumped || again.Created {
		t.Fatalf("a read after a bump under the same incarnation = %+v, %v; want the bumped epoch %d kept", again, err, bumped)
	}
	v2 = bumped
	epoch.Incarnation = "" // INFO refused: no check
	if again, err := e.store.Version(e.ctx, epoch); err != nil || again.Version != v2 {
		t.Fatalf("without an incarnation: epoch %d, %v; want %d", again.Version, err, v2)
	}
	sub.expect()
}

// TestBumpAboveClock presets versions above the clock, so that Bump returns
// cur+1 exactly, and picks values whose uvarint encodings cross group
// boundaries (low 7 or 14 bits all ones, then carried) and byte counts: the
// script builds the uvarint with Lua double arithmetic.
func TestBumpAboveClock(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	const base = uint64(1) << 52 // the year 2112 in Unix µs: above the clock
	for _, want := range []uint64{
		base + 127, base + 128, base + 16383, base + 16384,
		1<<52 + 1<<49 - 1, 1<<52 + 1<<50 + 12345,
		1<<53 - 1, // the largest integer a Lua number holds exactly
	} {
		group := "g" + strconv.FormatUint(want, 10)
		key := keys.VersionKey("ns", group)
		e.set(key, strconv.FormatUint(want-1, 10), 0)
		v, err := e.store.Bump(e.ctx, Version{Key: key, Prefix: bumpPrefix(t, group)})
		if err != nil || v != want {
			t.Fatalf("Bump from %d = %d, %v; want %d", want-1, v, err, want)
		}
		if got := e.get(key); got != strconv.FormatUint(want, 10) {
			t.Fatalf("version key = %q; want %d", got, want)
		}
		checkBumpMessage(t, sub.next(), group, want)
	}
	sub.expect()
}

// fullServer is a Store on a redis-server whose memory is full, with
// maxmemory-policy noeviction: writes of new data are refused (OOM).
func fullServer(t *testing.T) *env {
	e := newEnv(t)
	e.srv.ConfigSet(t, "maxmemory-policy", "noeviction")
	if err := e.rdb.Eval(e.ctx, "for i = 1, 20000 do redis.call('SET', 'fill:' .. i, string.rep('x', 100)) end return 1", nil).Err(); err != nil {
		t.Fatal(err)
	}
	e.srv.ConfigSet(t, "maxmemory", "1mb")
	if err := e.rdb.Set(e.ctx, "probe", "x", 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("SET on the full server: %v, want OOM", err)
	}
	return e
}

// Under maxmemory with noeviction, bumps and new versions still land (a
// few bytes each); a Set that Redis refuses deletes the old value and still
// publishes; a refused fill gives its lease back.
func TestWritesWhenRedisIsFull(t *testing.T) {
	e := fullServer(t)
	sub := e.subscribe()
	key := keys.VersionKey("ns", "g")
	r1, err := e.store.Version(e.ctx, Version{Key: key, Prefix: bumpPrefix(t, "g")})
	if err != nil {
		t.Fatalf("Version on a full server: %v", err)
	}
	v1 := r1.Version
	checkBumpMessage(t, sub.next(), "g", v1)
	v2, err := e.store.Bump(e.ctx, Version{Key: key, Floor: v1, Prefix: bumpPrefix(t, "g")})
	if err != nil || v2 <= v1 {
		t.Fatalf("Bump on a full server = %d, %v", v2, err)
	}
	checkBumpMessage(t, sub.next(), "g", v2)

	// The old value was stored before memory filled up.
	e.srv.ConfigSet(t, "maxmemory", "0")
	e.set("val", "old", 0)
	e.srv.ConfigSet(t, "maxmemory", "1mb")
	err = e.store.Set(e.ctx, Write{Key: "val", Lease: keys.LeaseKey("val"), Env: []byte("new"), TTL: time.Minute, Msg: []byte("inv")})
	if !errors.Is(err, ErrNotStored) || !strings.Contains(err.Error(), "OOM") {
		t.Fatalf("Set on a full server: %v, want ErrNotStored naming OOM", err)
	}
	if n, _ := e.rdb.Exists(e.ctx, "val").Result(); n != 0 {
		t.Fatal("the old value is still in Redis after a refused Set")
	}
	if got := sub.next(); string(got) != "inv" {
		t.Fatalf("message after a refused Set = %q, want the invalidation", got)
	}

	l := Lease{Key: "filled", Lease: keys.LeaseKey("filled")}
	e.srv.ConfigSet(t, "maxmemory", "0")
	if got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: time.Minute}); err != nil || got[0].State != Won {
		t.Fatalf("GetOrLease = %+v, %v", got, err)
	}
	e.srv.ConfigSet(t, "maxmemory", "1mb")
	stored, err := e.store.FillLeased(e.ctx, "A", []Write{{Key: l.Key, Lease: l.Lease, Env: []byte("v"), TTL: time.Minute}})
	if err != nil || stored[0] == Stored {
		t.Fatalf("FillLeased on a full server = %v, %v; want not stored", stored, err)
	}
	if n, _ := e.rdb.Exists(e.ctx, l.Lease).Result(); n != 0 {
		t.Fatal("a refused fill kept its lease")
	}
	sub.expect()
}

func TestServerStateChangesWithEveryRestart(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	s := NewStore(rdb, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st1, err := s.ServerState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(st1.Incarnation, "/"); len(parts) != 2 || len(parts[0]) != 40 || len(parts[1]) != 40 {
		t.Fatalf("incarnation = %q, want run_id/master_replid", st1.Incarnation)
	}
	if d := st1.Time.Sub(st1.Sent); d < -time.Second || d > time.Second || st1.Received.Before(st1.Sent) {
		t.Fatalf("server time %v, sent %v, received %v", st1.Time, st1.Sent, st1.Received)
	}
	if st, err := s.ServerState(ctx); err != nil || st.Incarnation != st1.Incarnation {
		t.Fatalf("incarnation again = %q, %v; want %q", st.Incarnation, err, st1.Incarnation)
	}
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t) // loads the snapshot: same data, a new run
	if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after the restart from the snapshot k = %q, %v", v, err)
	}
	st2, err := s.ServerState(ctx)
	if err != nil || st2.Incarnation == st1.Incarnation {
		t.Fatalf("incarnation after a restart = %q, %v; want a new one (was %q)", st2.Incarnation, err, st1.Incarnation)
	}
}

// With a version, Redis keeps the highest: a Set or fill of an older one
// changes nothing, compared in the same script as the write.
func TestWritesKeepTheNewerVersion(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	l := Lease{Key: "v", Lease: keys.LeaseKey("v")}
	env := func(v uint64, payload string) []byte {
		return AppendEnvelope(nil, &Envelope{FreshUntil: UnixMilli(e.serverMs() + 60_000), Version: v, Payload: []byte(payload)})
	}
	set := func(v uint64, payload string) error {
		return e.store.Set(e.ctx, Write{Key: l.Key, Lease: l.Lease, Env: env(v, payload), TTL: time.Minute, Msg: []byte("m" + payload), Version: VersionBytes(v)})
	}
	if err := set(1<<40, "v2"); err != nil {
		t.Fatal(err)
	}
	if err := set(1<<40-1, "v1"); !errors.Is(err, ErrOlder) {
		t.Fatalf("Set of an older version: %v, want ErrOlder", err)
	}
	if got, _ := DecodeEnvelope([]byte(e.get(l.Key))); string(got.Payload) != "v2" {
		t.Fatalf("Redis holds %q after the older Set, want v2", got.Payload)
	}
	if err := set(1<<40, "v2 again"); err != nil { // the same version: written
		t.Fatal(err)
	}
	if err := set(1<<41, "v3"); err != nil {
		t.Fatal(err)
	}
	sub.expect([]byte("mv2"), []byte("mv2 again"), []byte("mv3")) // the refused one published nothing

	// A fill under a lease, older than what Redis holds (stale by now).
	e.set(l.Key, string(AppendEnvelope(nil, &Envelope{FreshUntil: 1, Version: 9, Payload: []byte("stale v9")})), 0)
	if got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: time.Minute}); err != nil || got[0].State != Won {
		t.Fatalf("GetOrLease = %+v, %v", got, err)
	}
	out, err := e.store.FillLeased(e.ctx, "A", []Write{{Key: l.Key, Lease: l.Lease, Env: env(4, "v4"), TTL: time.Minute, Version: VersionBytes(4)}})
	if err != nil || out[0] != Older {
		t.Fatalf("FillLeased of an older version = %v, %v; want Older", out, err)
	}
	if n, _ := e.rdb.Exists(e.ctx, l.Lease).Result(); n != 0 {
		t.Fatal("an older fill kept its lease")
	}
	if got, _ := DecodeEnvelope([]byte(e.get(l.Key))); string(got.Payload) != "stale v9" {
		t.Fatalf("Redis holds %q after the older fill", got.Payload)
	}
}
