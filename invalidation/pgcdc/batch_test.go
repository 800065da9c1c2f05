package pgcdc

import (
	"errors"
	"slices"
	"testing"
)

func TestBatchMergeAndBound(t *testing.T) {
	limits := []int{3, 0} // target 0 can invalidate all past 3 ids; target 1 cannot
	a := newBatch(limits)
	a.addID(0, "x")
	a.addID(0, "y")
	a.addGroup(1, "g")
	a.end, a.txns = 10, 1
	b := newBatch(limits)
	b.addID(0, "y") // a duplicate across transactions is sent once
	b.addID(1, "z")
	b.end, b.txns = 20, 1
	a.merge(b)
	if len(a.work[0].ids) != 2 || a.work[0].all || len(a.work[1].ids) != 1 || len(a.work[1].groups) != 1 {
		t.Fatalf("merged work: %+v", a.work)
	}
	if a.end != 20 || a.txns != 2 {
		t.Fatalf("merged end %d, txns %d; want 20, 2", a.end, a.txns)
	}
	for _, id := range []string{"p", "q"} {
		a.addID(0, id)
	}
	if w := a.work[0]; !w.all || w.ids != nil {
		t.Fatalf("target 0 past its limit of 3 ids: %+v, want all", w)
	}
	for i := range 100 {
		a.addID(1, string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	if w := a.work[1]; w.all || len(w.ids) != 101 {
		t.Fatalf("a target without InvalidateAll must keep every id: all=%v ids=%d", w.all, len(w.ids))
	}
	c := newBatch(limits)
	c.invalidateAll(1)
	a.merge(c)
	if !a.work[1].all || a.empty() {
		t.Fatalf("merging an all: %+v", a.work[1])
	}
	// A target that cannot invalidate all keeps what it can still do.
	if w := a.work[1]; len(w.ids) != 101 || len(w.groups) != 1 {
		t.Fatalf("an all on a target without InvalidateAll dropped its work: ids=%d groups=%d", len(w.ids), len(w.groups))
	}
	a.invalidateAll(1)
	a.addID(1, "after")
	if w := a.work[1]; !w.all || len(w.ids) != 102 {
		t.Fatalf("ids after an all on a target without InvalidateAll: all=%v ids=%d", w.all, len(w.ids))
	}
	if !newBatch(limits).empty() {
		t.Fatal("a new batch is not empty")
	}
}

func TestLedgerConfirmsOnlyWhatIsApplied(t *testing.T) {
	l := newLedger()
	limits := []int{10}
	work := func(end uint64) *batch {
		b := newBatch(limits)
		b.addID(0, "id")
		b.end, b.txns = end, 1
		return b
	}
	empty := func(end uint64) *batch {
		b := newBatch(limits)
		b.end, b.txns = end, 1
		return b
	}
	l.commit(empty(5)) // nothing ahead: confirmable at once
	if got := l.confirmable(); got != 5 {
		t.Fatalf("after an empty transaction: %d, want 5", got)
	}
	l.commit(work(10))
	l.commit(empty(15)) // behind a pending one: waits for it
	l.idle(100)         // something is in flight: a keepalive confirms nothing
	if got := l.confirmable(); got != 5 {
		t.Fatalf("with a transaction pending: %d, want 5", got)
	}
	b := l.take()
	if b == nil || b.end != 15 || b.txns != 2 {
		t.Fatalf("take = %+v, want the two merged up to 15", b)
	}
	l.idle(100) // being applied: still in flight
	if got := l.confirmable(); got != 5 {
		t.Fatalf("while applying: %d, want 5", got)
	}
	l.commit(empty(20)) // behind the one being applied
	l.done(b.end)
	if got := l.confirmable(); got != 15 {
		t.Fatalf("after applying: %d, want 15", got)
	}
	if b := l.take(); b == nil || b.end != 20 || !b.empty() {
		t.Fatalf("take = %+v, want the empty one at 20", b)
	}
	l.done(20)
	l.idle(100) // nothing in flight now
	if got := l.confirmable(); got != 100 {
		t.Fatalf("idle keepalive: %d, want 100", got)
	}
	l.raise(50) // never backwards
	if got := l.confirmable(); got != 100 {
		t.Fatalf("after raise(50): %d, want 100", got)
	}
}

func TestPrimaryKeyIDs(t *testing.T) {
	single := primaryKeyIDs([]string{"id"})
	composite := primaryKeyIDs([]string{"tenant", "id"})
	for _, tc := range []struct {
		name string
		fn   func(Change) []string
		c    Change
		want []string
	}{
		{"insert", single, Change{Op: Insert, New: map[string]string{"id": "7", "v": "x"}}, []string{"7"}},
		{"update, key unchanged", single, Change{Op: Update, New: map[string]string{"id": "7"}}, []string{"7"}},
		{"update, key changed", single, Change{Op: Update, New: map[string]string{"id": "8"}, Old: map[string]string{"id": "7"}}, []string{"8", "7"}},
		{"update, full identity", single, Change{Op: Update, New: map[string]string{"id": "7"}, Old: map[string]string{"id": "7", "v": "y"}}, []string{"7"}},
		{"delete", single, Change{Op: Delete, Old: map[string]string{"id": "7"}}, []string{"7"}},
		{"composite", composite, Change{Op: Insert, New: map[string]string{"tenant": "t1", "id": "7"}}, []string{"t1:7"}},
		{"composite, key column missing", composite, Change{Op: Delete, Old: map[string]string{"id": "7"}}, []string{}},
	} {
		if got := tc.fn(tc.c); !slices.Equal(got, tc.want) {
			t.Errorf("%s: ids = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOpString(t *testing.T) {
	for op, want := range map[Op]string{Insert: "insert", Update: "update", Delete: "delete", Truncate: "truncate", 42: "op(42)"} {
		if got := op.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", op, got, want)
		}
	}
}

// Malformed replication messages are errors, never panics or allocations
// beyond the message's size.
func TestDecodeRejectsMalformedMessages(t *testing.T) {
	for _, data := range [][]byte{
		nil,
		{'I'},                        // insert without a body
		{'I', 0, 0, 0, 1, 'N', 0, 5}, // five columns announced, none present
		{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0xff, 0xff, 0xff, 0xff, 'x'}, // a 4 GB value in 1 byte
		{'I', 0, 0, 0, 1, 'X', 0, 0},                                   // not a new tuple
		{'I', 0, 0, 0, 1, 'N', 0, 1, 'q'},                              // unknown column kind
		{'U', 0, 0, 0, 1, 'K'},
		{'U', 0, 0, 0, 1, 'K', 0, 0, 'Z'}, // old tuple, then no new one
		{'D', 0, 0, 0, 1, 'N', 0, 0},      // a delete with a new tuple
		{'R', 0},
		{'R', 0, 0, 0, 1, 'p', 'u', 'b', 0, 't', 0, 'd', 0xff, 0xff}, // 65535 columns in 0 bytes
		{'T', 0xff, 0xff, 0xff, 0xff, 0},                             // 4 billion relations in 0 bytes
		{'C', 0, 1, 2},
		{'S', 1, 2, 3}, // a streaming message: not in protocol version 1
	} {
		if _, err := decodeMessage(data); !errors.Is(err, errProtocol) {
			t.Errorf("decodeMessage(%q) = %v, want errProtocol", data, err)
		}
	}
	m, err := decodeMessage([]byte{'U', 0, 0, 0, 7, 'O', 0, 2, 'n', 't', 0, 0, 0, 1, 'a', 'N', 0, 2, 'u', 't', 0, 0, 0, 1, 'b'})
	if err != nil || m.relID != 7 || len(m.old) != 2 || string(m.old[1].data) != "a" || m.new[0].kind != 'u' || string(m.new[1].data) != "b" {
		t.Fatalf("a valid UPDATE decoded as %+v, %v", m, err)
	}
	if row := rowOf([]string{"x", "y"}, m.new); len(row) != 1 || row["y"] != "b" {
		t.Fatalf("rowOf leaves out unchanged TOAST values: %v", row)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte{'B', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3})
	f.Add([]byte{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0, 0, 0, 1, 'x'})
	f.Add([]byte{'D', 0, 0, 0, 1, 'K', 0, 1, 'n'})
	f.Add([]byte{'R', 0, 0, 0, 1, 'p', 0, 't', 0, 'd', 0, 1, 1, 'i', 'd', 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'T', 0, 0, 0, 1, 0, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data) // must not panic
		if err == nil && len(m.new)+len(m.old)+len(m.columns)+len(m.relIDs) > len(data) {
			t.Fatalf("decoded more items than bytes: %+v", m)
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	c := Config{ConnString: "postgres://x", Rules: []Rule{{Table: "t", Target: nopTarget{}}}, ServerTimeout: 2 * 1e9}
	if err := c.applyDefaults(); err != nil {
		t.Fatal(err)
	}
	if c.Slot != "tiercache" || c.Publication != "tiercache" || c.StandbyRetry != defaultStandbyRetry ||
		c.StatusInterval != 1e9 || c.ApplyTimeout != defaultApplyTimeout || c.MaxPendingIDs != defaultMaxPendingIDs ||
		c.RetryBackoff != defaultRetryBackoff || c.MaxRetryBackoff != defaultMaxRetryBackoff || c.Logger == nil {
		t.Fatalf("defaults: %+v", c)
	}
	var nilKeyspace *struct{ nopTarget }
	c = Config{ConnString: "postgres://x", Rules: []Rule{{Table: "t", Target: nilKeyspace}}}
	if err := c.applyDefaults(); !errors.Is(err, ErrConfig) {
		t.Fatalf("a nil pointer Target: %v", err)
	}
}
