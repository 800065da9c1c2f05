package remote

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/keys"
)

const channel = "tiercache-test"

// env is a Store on its own redis-server, the raw client beside it for
// checks, and a recorder of the pipelines the store sends.
type env struct {
	t     *testing.T
	ctx   context.Context
	srv   *redistest.Server
	rdb   *redis.Client
	store *Store
	pipes *pipeRecorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	// Loaded up front, as on a long-running server: a fresh server knows no
	// script, and the first pipelined EVALSHA of each would fall back to EVAL,
	// which TestScriptsSurviveFlush checks on its own.
	for _, s := range allScripts {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			t.Fatalf("SCRIPT LOAD: %v", err)
		}
	}
	pipes := &pipeRecorder{}
	rdb.AddHook(pipes)
	return &env{t: t, ctx: ctx, srv: srv, rdb: rdb, store: NewStore(rdb, Options{Channel: channel}), pipes: pipes}
}

// pipeRecorder is a go-redis hook that records the command names of every
// pipeline, so tests can check how many round trips an operation took.
type pipeRecorder struct {
	mu    sync.Mutex
	pipes [][]string
}

func (r *pipeRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *pipeRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (r *pipeRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		r.mu.Lock()
		r.pipes = append(r.pipes, names)
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}

// take returns the pipelines recorded since the last call.
func (r *pipeRecorder) take() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pipes
	r.pipes = nil
	return p
}

// expectPipes checks the pipelines recorded since the last take: one per
// entry of want, each of want[i] commands named name[i].
func (e *env) expectPipes(name []string, want []int) {
	e.t.Helper()
	got := e.pipes.take()
	if len(got) != len(want) {
		e.t.Fatalf("%d pipelines %v; want %d", len(got), got, len(want))
	}
	for i, p := range got {
		if len(p) != want[i] {
			e.t.Fatalf("pipeline %d = %v; want %d commands", i, p, want[i])
		}
		for _, n := range p {
			if n != name[i] {
				e.t.Fatalf("pipeline %d = %v; want only %s", i, p, name[i])
			}
		}
	}
}

func (e *env) set(key, val string, ttl time.Duration) {
	e.t.Helper()
	if err := e.rdb.Set(e.ctx, key, val, ttl).Err(); err != nil {
		e.t.Fatalf("SET %s: %v", key, err)
	}
}

// get returns the value at key, or "<nil>" when it is absent.
func (e *env) get(key string) string {
	e.t.Helper()
	v, err := e.rdb.Get(e.ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return "<nil>"
	}
	if err != nil {
		e.t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

// pttl returns the remaining TTL of key; it fails the test unless the key
// exists and has a TTL.
func (e *env) pttl(key string) time.Duration {
	e.t.Helper()
	d, err := e.rdb.PTTL(e.ctx, key).Result()
	if err != nil {
		e.t.Fatalf("PTTL %s: %v", key, err)
	}
	if d <= 0 {
		e.t.Fatalf("PTTL %s = %v; want a positive TTL", key, d)
	}
	return d
}

// subscriber is a raw go-redis PubSub on channel, subscribed (confirmed by
// the server) before the test goes on.
type subscriber struct {
	e  *env
	ps *redis.PubSub
}

func (e *env) subscribe() *subscriber {
	e.t.Helper()
	ps := e.rdb.Subscribe(e.ctx, channel)
	e.t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.ReceiveTimeout(e.ctx, 5*time.Second); err != nil {
		e.t.Fatalf("subscribe: %v", err)
	}
	return &subscriber{e: e, ps: ps}
}

// next returns the payload of the next message.
func (s *subscriber) next() []byte {
	s.e.t.Helper()
	for {
		m, err := s.ps.ReceiveTimeout(s.e.ctx, 5*time.Second)
		if err != nil {
			s.e.t.Fatalf("receive: %v", err)
		}
		switch m := m.(type) {
		case *redis.Message:
			return []byte(m.Payload)
		case *redis.Pong, *redis.Subscription:
		default:
			s.e.t.Fatalf("receive: unexpected %T %v", m, m)
		}
	}
}

// expect checks that the next messages are exactly want, in order, and that
// none follows: it publishes a marker and requires it to be the next thing
// received. Redis delivers a connection's subscribers messages in the order
// the server executed the PUBLISHes, and every PUBLISH of the store returned
// before the marker's was sent.
func (s *subscriber) expect(want ...[]byte) {
	s.e.t.Helper()
	for i, w := range want {
		if got := s.next(); !bytes.Equal(got, w) {
			s.e.t.Fatalf("message %d = %q; want %q", i, got, w)
		}
	}
	const marker = "end-of-expected-messages"
	if err := s.e.rdb.Publish(s.e.ctx, channel, marker).Err(); err != nil {
		s.e.t.Fatalf("PUBLISH marker: %v", err)
	}
	if got := s.next(); string(got) != marker {
		s.e.t.Fatalf("unexpected extra message %q after %d expected", got, len(want))
	}
}

func envelope(freshUntilMs int64, payload string) []byte {
	return AppendEnvelope(nil, &Envelope{FreshUntil: UnixMilli(freshUntilMs), Payload: []byte(payload)})
}

func nowMs() int64 { return time.Now().UnixMilli() }

func TestGet(t *testing.T) {
	e := newEnv(t)
	e.set("k", "value", 0)
	e.set("empty", "", 0)

	b, found, err := e.store.Get(e.ctx, "k")
	if err != nil || !found || string(b) != "value" {
		t.Fatalf(`Get(k) = %q, %v, %v; want "value", true, nil`, b, found, err)
	}
	b, found, err = e.store.Get(e.ctx, "empty")
	if err != nil || !found || b == nil || len(b) != 0 {
		t.Fatalf("Get(empty) = %#v, %v, %v; want non-nil empty, true, nil", b, found, err)
	}
	b, found, err = e.store.Get(e.ctx, "missing")
	if err != nil || found || b != nil {
		t.Fatalf("Get(missing) = %q, %v, %v; want nil, false, nil", b, found, err)
	}
}

func TestGetMany(t *testing.T) {
	e := newEnv(t)
	e.set("a", "A", 0)
	e.set("b", "B", 0)
	e.set("empty", "", 0)
	e.pipes.take()

	got, err := e.store.GetMany(e.ctx, []string{"a", "missing1", "b", "empty", "missing2", "a"})
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	want := []string{"A", "<nil>", "B", "", "<nil>", "A"}
	if len(got) != len(want) {
		t.Fatalf("GetMany returned %d values; want %d", len(got), len(want))
	}
	for i, w := range want {
		switch {
		case w == "<nil>" && got[i] != nil:
			t.Errorf("out[%d] = %q; want nil", i, got[i])
		case w != "<nil>" && (got[i] == nil || string(got[i]) != w):
			t.Errorf("out[%d] = %#v; want %q", i, got[i], w)
		}
	}
	e.expectPipes([]string{"get"}, []int{6})

	if got, err := e.store.GetMany(e.ctx, nil); err != nil || got != nil {
		t.Fatalf("GetMany(nil) = %v, %v; want nil, nil", got, err)
	}
	if got, err := e.store.GetMany(e.ctx, []string{"x", "y"}); err != nil || len(got) != 2 || got[0] != nil || got[1] != nil {
		t.Fatalf("GetMany of misses only = %q, %v; want [nil nil], nil", got, err)
	}
}

func TestSet(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	key := "ns:k"
	lease := keys.LeaseKey(key)
	e.set(key, "old", 0)
	e.set(lease, "someone's token", time.Minute)

	val := envelope(nowMs()+60_000, "new")
	msg := []byte("invalidate ns:k")
	if err := e.store.Set(e.ctx, Write{Key: key, Lease: lease, Env: val, TTL: 1500 * time.Millisecond, Msg: msg}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	if got := e.get(key); got != string(val) {
		t.Fatalf("value = %q; want %q", got, val)
	}
	if d := e.pttl(key); d > 1500*time.Millisecond {
		t.Fatalf("PTTL = %v; want <= 1.5s", d)
	}
	if got := e.get(lease); got != "<nil>" {
		t.Fatalf("lease = %q after Set; want it deleted", got)
	}
	sub.expect(msg)
}

func TestSetWithoutMessagePublishesNothing(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	for i, msg := range [][]byte{nil, {}} {
		key := "k" + strconv.Itoa(i)
		if err := e.store.Set(e.ctx, Write{Key: key, Lease: keys.LeaseKey(key), Env: []byte("v"), TTL: time.Minute, Msg: msg}); err != nil {
			t.Fatalf("Set(msg %#v): %v", msg, err)
		}
		if got := e.get(key); got != "v" {
			t.Fatalf("value = %q; want %q", got, "v")
		}
	}
	sub.expect()
}

func TestFill(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	lease := keys.LeaseKey("k")
	e.set(lease, "tok", time.Minute)
	if err := e.store.Fill(e.ctx, []Write{{Key: "k", Env: []byte("v"), TTL: time.Second}}); err != nil {
		t.Fatalf("Fill: %v", err)
	}
	if got := e.get("k"); got != "v" {
		t.Fatalf("value = %q; want %q", got, "v")
	}
	if d := e.pttl("k"); d > time.Second {
		t.Fatalf("PTTL = %v; want <= 1s", d)
	}
	if got := e.get(lease); got != "tok" {
		t.Fatalf("lease = %q; Fill must leave it alone", got)
	}
	sub.expect() // fills are never broadcast
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	all := []string{"a", keys.LeaseKey("a"), "b", keys.LeaseKey("b"), "c", "d", "kept"}
	for _, k := range all {
		e.set(k, "x", 0)
	}
	e.pipes.take()
	batches := []DeleteBatch{
		{Keys: []string{"a", keys.LeaseKey("a")}, Msg: []byte("m1")},
		{Keys: []string{"b", keys.LeaseKey("b"), "c", "absent"}, Msg: []byte("m2")},
		{Keys: []string{"d"}}, // no message
	}
	if err := e.store.Delete(e.ctx, batches); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	e.expectPipes([]string{"evalsha"}, []int{3})
	for _, k := range all[:len(all)-1] {
		if got := e.get(k); got != "<nil>" {
			t.Errorf("%s = %q after Delete; want it deleted", k, got)
		}
	}
	if got := e.get("kept"); got != "x" {
		t.Errorf("kept = %q; Delete removed a key of no batch", got)
	}
	sub.expect([]byte("m1"), []byte("m2"))

	// One batch takes the single-script path.
	e.set("e", "x", 0)
	if err := e.store.Delete(e.ctx, []DeleteBatch{{Keys: []string{"e"}, Msg: []byte("m3")}}); err != nil {
		t.Fatalf("Delete of one batch: %v", err)
	}
	if got := e.get("e"); got != "<nil>" {
		t.Errorf("e = %q after Delete; want it deleted", got)
	}
	sub.expect([]byte("m3"))

	if err := e.store.Delete(e.ctx, nil); err != nil {
		t.Fatalf("Delete of no batches: %v", err)
	}
}

func TestGetOrLeaseAbsent(t *testing.T) {
	e := newEnv(t)
	l := Lease{Key: "k", Lease: keys.LeaseKey("k")}
	ttl := 2 * time.Second

	got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: ttl})
	if err != nil || len(got) != 1 || got[0].State != Won || got[0].Value != nil {
		t.Fatalf("GetOrLease(absent, A) = %+v, %v; want [{Won nil}]", got, err)
	}
	if tok := e.get(l.Lease); tok != "A" {
		t.Fatalf("lease = %q; want token A", tok)
	}
	if d := e.pttl(l.Lease); d > ttl {
		t.Fatalf("lease PTTL = %v; want <= %v", d, ttl)
	}
	got, err = e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "B", TTL: ttl})
	if err != nil || len(got) != 1 || got[0].State != Lost || got[0].Value != nil {
		t.Fatalf("GetOrLease(absent, B) = %+v, %v; want [{Lost nil}]", got, err)
	}
	if tok := e.get(l.Lease); tok != "A" {
		t.Fatalf("lease = %q after B lost; want token A still", tok)
	}
	if got := e.get(l.Key); got != "<nil>" {
		t.Fatalf("value = %q; GetOrLease must not write it", got)
	}
}

func TestGetOrLeaseFresh(t *testing.T) {
	e := newEnv(t)
	l := Lease{Key: "k", Lease: keys.LeaseKey("k")}
	val := envelope(nowMs()+time.Hour.Milliseconds(), "fresh")
	e.set(l.Key, string(val), 0)

	got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: time.Second})
	if err != nil || len(got) != 1 || got[0].State != Found || !bytes.Equal(got[0].Value, val) {
		t.Fatalf("GetOrLease(fresh) = %+v, %v; want [{Found %q}]", got, err, val)
	}
	if tok := e.get(l.Lease); tok != "<nil>" {
		t.Fatalf("lease = %q; a fresh value must not take one", tok)
	}
}

func TestGetOrLeaseStale(t *testing.T) {
	e := newEnv(t)
	l := Lease{Key: "k", Lease: keys.LeaseKey("k")}
	stale := envelope(nowMs()-1000, "stale")
	e.set(l.Key, string(stale), 0)

	got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: time.Second})
	if err != nil || len(got) != 1 || got[0].State != Won || !bytes.Equal(got[0].Value, stale) {
		t.Fatalf("GetOrLease(stale, A) = %+v, %v; want [{Won %q}]", got, err, stale)
	}
	if tok := e.get(l.Lease); tok != "A" {
		t.Fatalf("lease = %q; want token A", tok)
	}
	got, err = e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "B", TTL: time.Second})
	if err != nil || len(got) != 1 || got[0].State != Lost || !bytes.Equal(got[0].Value, stale) {
		t.Fatalf("GetOrLease(stale, B) = %+v, %v; want [{Lost %q}]", got, err, stale)
	}
	if got := e.get(l.Key); got != string(stale) {
		t.Fatalf("value = %q; GetOrLease must leave the stale value", got)
	}
}

// TestGetOrLeaseFreshness checks that the script reads fresh-until from the
// envelope and compares it with the server's clock, not the caller's.
func TestGetOrLeaseFreshness(t *testing.T) {
	e := newEnv(t)
	l := Lease{Key: "k", Lease: keys.LeaseKey("k")}
	for i, c := range []struct {
		until int64
		want  LeaseState
	}{
		{e.serverMs() + 5000, Found},
		{e.serverMs() - 1, Won},
		{1_000_000, Lost}, // long past; the lease is taken by now
		{-5, Lost},        // a negative time lies in the past
		{1 << 62, Found},  // beyond 2^53 ms (Lua numbers are doubles) is still fresh
	} {
		e.set(l.Key, string(envelope(c.until, "v")), 0)
		got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A" + strconv.Itoa(i), TTL: time.Minute})
		if err != nil || len(got) != 1 || got[0].State != c.want {
			t.Fatalf("GetOrLease of a value fresh until %d (server now %d) = %+v, %v; want state %d", c.until, e.serverMs(), got, err, c.want)
		}
	}
}

// TestGetOrLeaseForeign: bytes that are not an envelope come back as Found,
// for the caller to reject (DecodeEnvelope) and overwrite; the script takes
// no lease on them.
func TestGetOrLeaseForeign(t *testing.T) {
	e := newEnv(t)
	for name, v := range map[string]string{
		"json":  `{"id":1,"name":"written by another program"}`,
		"short": "x",
		"empty": "",
		// Magic right, but shorter than the fresh-until field.
		"truncated envelope": string(envelope(1, "v")[:10]),
	} {
		key := "k:" + name
		l := Lease{Key: key, Lease: keys.LeaseKey(key)}
		e.set(key, v, 0)
		got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: time.Second})
		if err != nil || len(got) != 1 || got[0].State != Found || got[0].Value == nil || string(got[0].Value) != v {
			t.Fatalf("%s: GetOrLease = %+v, %v; want [{Found %q}]", name, got, err, v)
		}
		if _, err := DecodeEnvelope(got[0].Value); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: DecodeEnvelope = %v; want ErrCorrupt", name, err)
		}
		if tok := e.get(l.Lease); tok != "<nil>" {
			t.Fatalf("%s: lease = %q; want none", name, tok)
		}
	}
}

func TestGetOrLeaseMany(t *testing.T) {
	e := newEnv(t)
	fresh := envelope(nowMs()+60_000, "fresh")
	stale := envelope(nowMs()-60_000, "stale")
	e.set("fresh", string(fresh), 0)
	e.set("stale", string(stale), 0)
	e.set(keys.LeaseKey("taken"), "other", time.Minute)
	var ls []Lease
	for _, k := range []string{"absent", "fresh", "stale", "taken"} {
		ls = append(ls, Lease{Key: k, Lease: keys.LeaseKey(k)})
	}
	e.pipes.take()

	got, err := e.store.GetOrLease(e.ctx, ls, LeaseRequest{Token: "A", TTL: time.Minute})
	if err != nil {
		t.Fatalf("GetOrLease: %v", err)
	}
	want := []LeaseResult{{Won, nil}, {Found, fresh}, {Won, stale}, {Lost, nil}}
	for i, w := range want {
		if got[i].State != w.State || !bytes.Equal(got[i].Value, w.Value) || (w.Value == nil) != (got[i].Value == nil) {
			t.Errorf("%s: %+v; want %+v", ls[i].Key, got[i], w)
		}
	}
	e.expectPipes([]string{"evalsha"}, []int{4})

	if got, err := e.store.GetOrLease(e.ctx, nil, LeaseRequest{Token: "A", TTL: time.Minute}); err != nil || len(got) != 0 {
		t.Fatalf("GetOrLease(nil) = %+v, %v; want none, nil", got, err)
	}
}

func TestFillLeased(t *testing.T) {
	e := newEnv(t)
	l := Lease{Key: "k", Lease: keys.LeaseKey("k")}
	if got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: "A", TTL: time.Minute}); err != nil || got[0].State != Won {
		t.Fatalf("GetOrLease = %+v, %v; want Won", got, err)
	}
	val := envelope(nowMs()+60_000, "loaded")
	fill := []Write{{Key: l.Key, Lease: l.Lease, Env: val, TTL: 1500 * time.Millisecond}}

	stored, err := e.store.FillLeased(e.ctx, "B", fill)
	if err != nil || len(stored) != 1 || stored[0] == Stored {
		t.Fatalf("FillLeased(wrong token) = %v, %v; want [false]", stored, err)
	}
	if got := e.get(l.Key); got != "<nil>" {
		t.Fatalf("value = %q after a refused fill", got)
	}
	if tok := e.get(l.Lease); tok != "A" {
		t.Fatalf("lease = %q after a refused fill; want A", tok)
	}

	stored, err = e.store.FillLeased(e.ctx, "A", fill)
	if err != nil || len(stored) != 1 || stored[0] != Stored {
		t.Fatalf("FillLeased(A) = %v, %v; want [true]", stored, err)
	}
	if got := e.get(l.Key); got != string(val) {
		t.Fatalf("value = %q; want the filled envelope", got)
	}
	if d := e.pttl(l.Key); d > 1500*time.Millisecond {
		t.Fatalf("PTTL = %v; want <= 1.5s", d)
	}
	if tok := e.get(l.Lease); tok != "<nil>" {
		t.Fatalf("lease = %q after the fill; want it deleted", tok)
	}

	// The lease is gone now: a second fill by its former holder is refused.
	stored, err = e.store.FillLeased(e.ctx, "A", []Write{{Key: l.Key, Lease: l.Lease, Env: []byte("late"), TTL: time.Minute}})
	if err != nil || stored[0] == Stored {
		t.Fatalf("FillLeased after the lease was consumed = %v, %v; want [false]", stored, err)
	}
	if got := e.get(l.Key); got != string(val) {
		t.Fatalf("value = %q; a refused fill overwrote it", got)
	}
}

// TestFillLeasedVoided: a Set, a Delete, or a lease that expired and was
// taken by someone else all void the holder's lease, and its fill must be
// refused (it may have loaded the database before the change).
func TestFillLeasedVoided(t *testing.T) {
	e := newEnv(t)
	take := func(key, token string) Lease {
		t.Helper()
		l := Lease{Key: key, Lease: keys.LeaseKey(key)}
		if got, err := e.store.GetOrLease(e.ctx, []Lease{l}, LeaseRequest{Token: token, TTL: time.Minute}); err != nil || got[0].State != Won {
			t.Fatalf("GetOrLease(%s, %s) = %+v, %v; want Won", key, token, got, err)
		}
		return l
	}
	a := take("after-set", "A")
	if err := e.store.Set(e.ctx, Write{Key: a.Key, Lease: a.Lease, Env: []byte("written"), TTL: time.Minute, Msg: nil}); err != nil {
		t.Fatal(err)
	}
	b := take("after-delete", "A")
	if err := e.store.Delete(e.ctx, []DeleteBatch{{Keys: []string{b.Key, b.Lease}}}); err != nil {
		t.Fatal(err)
	}
	c := take("replaced", "A")
	if err := e.rdb.Del(e.ctx, c.Lease).Err(); err != nil { // as if it expired
		t.Fatal(err)
	}
	take("replaced", "B")
	e.pipes.take()

	stored, err := e.store.FillLeased(e.ctx, "A", []Write{
		{Key: a.Key, Lease: a.Lease, Env: []byte("stale load"), TTL: time.Minute},
		{Key: b.Key, Lease: b.Lease, Env: []byte("stale load"), TTL: time.Minute},
		{Key: c.Key, Lease: c.Lease, Env: []byte("stale load"), TTL: time.Minute},
	})
	if err != nil || len(stored) != 3 || stored[0] == Stored || stored[1] == Stored || stored[2] == Stored {
		t.Fatalf("FillLeased of voided leases = %v, %v; want [false false false]", stored, err)
	}
	e.expectPipes([]string{"evalsha"}, []int{3})
	for key, want := range map[string]string{a.Key: "written", b.Key: "<nil>", c.Key: "<nil>", c.Lease: "B"} {
		if got := e.get(key); got != want {
			t.Errorf("%s = %q; want %q", key, got, want)
		}
	}
	stored, err = e.store.FillLeased(e.ctx, "B", []Write{{Key: c.Key, Lease: c.Lease, Env: []byte("B's load"), TTL: time.Minute}})
	if err != nil || stored[0] != Stored || e.get(c.Key) != "B's load" {
		t.Fatalf("FillLeased by the new holder = %v, %v; want [true]", stored, err)
	}
}

func TestReleaseLease(t *testing.T) {
	e := newEnv(t)
	e.set("l1", "A", time.Minute)
	if err := e.store.ReleaseLeases(e.ctx, []string{"l1"}, "B"); err != nil {
		t.Fatalf("ReleaseLease(B): %v", err)
	}
	if got := e.get("l1"); got != "A" {
		t.Fatalf("lease = %q after another token's release; want A", got)
	}
	if err := e.store.ReleaseLeases(e.ctx, []string{"l1"}, "A"); err != nil {
		t.Fatalf("ReleaseLease(A): %v", err)
	}
	if got := e.get("l1"); got != "<nil>" {
		t.Fatalf("lease = %q after its holder's release; want it deleted", got)
	}
	if err := e.store.ReleaseLeases(e.ctx, []string{"l1"}, "A"); err != nil {
		t.Fatalf("ReleaseLease of an absent lease: %v", err)
	}

	e.set("mine1", "A", time.Minute)
	e.set("mine2", "A", time.Minute)
	e.set("theirs", "B", time.Minute)
	e.pipes.take()
	if err := e.store.ReleaseLeases(e.ctx, []string{"mine1", "theirs", "absent", "mine2"}, "A"); err != nil {
		t.Fatalf("ReleaseLeases: %v", err)
	}
	e.expectPipes([]string{"evalsha"}, []int{4})
	for key, want := range map[string]string{"mine1": "<nil>", "mine2": "<nil>", "theirs": "B"} {
		if got := e.get(key); got != want {
			t.Errorf("%s = %q after ReleaseLeases; want %q", key, got, want)
		}
	}
	if err := e.store.ReleaseLeases(e.ctx, nil, "A"); err != nil {
		t.Fatalf("ReleaseLeases(nil): %v", err)
	}
}

func TestTryLeases(t *testing.T) {
	e := newEnv(t)
	e.set("taken", "B", time.Minute)
	won, err := e.store.TryLeases(e.ctx, []string{"free", "taken"}, LeaseRequest{Token: "A", TTL: 2 * time.Second})
	if err != nil || len(won) != 2 || !won[0] || won[1] {
		t.Fatalf("TryLeases = %v, %v; want [true false]", won, err)
	}
	if got := e.get("free"); got != "A" {
		t.Fatalf("free = %q; want A", got)
	}
	if d := e.pttl("free"); d > 2*time.Second {
		t.Fatalf("PTTL = %v; want <= 2s", d)
	}
	if got := e.get("taken"); got != "B" {
		t.Fatalf("taken = %q; want B", got)
	}
}

// serverMs returns the server's clock in Unix ms.
func (e *env) serverMs() int64 {
	e.t.Helper()
	tm, err := e.rdb.Time(e.ctx).Result()
	if err != nil {
		e.t.Fatalf("TIME: %v", err)
	}
	return tm.UnixMilli()
}

// TestScriptsSurviveFlush: after SCRIPT FLUSH (what a restart or a failover
// to a replica that never saw the scripts looks like) the pipelined EVALSHA
// calls fail with NOSCRIPT and are re-sent by EVAL, once each: a delete
// publishes each message exactly once.
func TestScriptsSurviveFlush(t *testing.T) {
	e := newEnv(t)
	sub := e.subscribe()
	flush := func() {
		t.Helper()
		if err := e.rdb.ScriptFlush(e.ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH: %v", err)
		}
		e.pipes.take()
	}
	// Load the scripts first, so the flush really removes something.
	if err := e.store.Delete(e.ctx, []DeleteBatch{{Keys: []string{"x"}}, {Keys: []string{"y"}}}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		e.set(k, "x", 0)
	}

	flush()
	err := e.store.Delete(e.ctx, []DeleteBatch{
		{Keys: []string{"a"}, Msg: []byte("m1")},
		{Keys: []string{"b"}, Msg: []byte("m2")},
	})
	if err != nil {
		t.Fatalf("Delete after SCRIPT FLUSH: %v", err)
	}
	e.expectPipes([]string{"evalsha", "eval"}, []int{2, 2})
	if e.get("a") != "<nil>" || e.get("b") != "<nil>" {
		t.Fatalf("Delete after SCRIPT FLUSH left keys behind")
	}
	sub.expect([]byte("m1"), []byte("m2"))

	flush()
	ls := []Lease{{Key: "a", Lease: keys.LeaseKey("a")}, {Key: "b", Lease: keys.LeaseKey("b")}}
	got, err := e.store.GetOrLease(e.ctx, ls, LeaseRequest{Token: "A", TTL: time.Minute})
	if err != nil || len(got) != 2 || got[0].State != Won || got[1].State != Won {
		t.Fatalf("GetOrLease after SCRIPT FLUSH = %+v, %v; want Won twice", got, err)
	}
	e.expectPipes([]string{"evalsha", "eval"}, []int{2, 2})

	flush()
	stored, err := e.store.FillLeased(e.ctx, "A", []Write{
		{Key: "a", Lease: ls[0].Lease, Env: []byte("A"), TTL: time.Minute},
		{Key: "b", Lease: ls[1].Lease, Env: []byte("B"), TTL: time.Minute},
	})
	if err != nil || len(stored) != 2 || stored[0] != Stored || stored[1] != Stored {
		t.Fatalf("FillLeased after SCRIPT FLUSH = %v, %v; want [true true]", stored, err)
	}

	flush()
	e.set(ls[0].Lease, "A", time.Minute)
	e.set(ls[1].Lease, "A", time.Minute)
	if err := e.store.ReleaseLeases(e.ctx, []string{ls[0].Lease, ls[1].Lease}, "A"); err != nil {
		t.Fatalf("ReleaseLeases after SCRIPT FLUSH: %v", err)
	}
	if e.get(ls[0].Lease) != "<nil>" || e.get(ls[1].Lease) != "<nil>" {
		t.Fatalf("ReleaseLeases after SCRIPT FLUSH left leases behind")
	}

	// The single-script path (Script.Run) falls back to EVAL by itself.
	flush()
	if err := e.store.Set(e.ctx, Write{Key: "c", Lease: keys.LeaseKey("c"), Env: []byte("v"), TTL: time.Minute, Msg: []byte("m3")}); err != nil {
		t.Fatalf("Set after SCRIPT FLUSH: %v", err)
	}
	sub.expect([]byte("m3"))
	flush()
	if _, err := e.store.Version(e.ctx, Version{Key: keys.VersionKey("ns", "g")}); err != nil {
		t.Fatalf("Version after SCRIPT FLUSH: %v", err)
	}
}

// TestScriptsSurviveRestart: a restarted server has no scripts and no data;
// once the client has reconnected, pipelined scripts work again.
func TestScriptsSurviveRestart(t *testing.T) {
	e := newEnv(t)
	if err := e.store.Delete(e.ctx, []DeleteBatch{{Keys: []string{"x"}}, {Keys: []string{"y"}}}); err != nil {
		t.Fatal(err)
	}
	e.srv.Restart(t)
	// Pooled connections died with the old process; poll until a fresh one
	// answers (MaxRetries is -1 in tests, so the first command may fail).
	deadline := time.Now().Add(10 * time.Second)
	for e.rdb.Ping(e.ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("client did not reconnect after restart")
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not synchronisation
	}
	e.set("a", "x", 0)
	e.set("b", "x", 0)
	if err := e.store.Delete(e.ctx, []DeleteBatch{{Keys: []string{"a"}}, {Keys: []string{"b"}}}); err != nil {
		t.Fatalf("Delete after restart: %v", err)
	}
	if e.get("a") != "<nil>" || e.get("b") != "<nil>" {
		t.Fatalf("Delete after restart left keys behind")
	}
	ls := []Lease{{Key: "a", Lease: keys.LeaseKey("a")}, {Key: "b", Lease: keys.LeaseKey("b")}}
	if got, err := e.store.GetOrLease(e.ctx, ls, LeaseRequest{Token: "A", TTL: time.Minute}); err != nil || got[0].State != Won || got[1].State != Won {
		t.Fatalf("GetOrLease after restart = %+v, %v; want Won twice", got, err)
	}
}
