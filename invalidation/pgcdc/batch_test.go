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

// Malformed replication messages are errors, never panics.
func TestParseRejectsMalformedMessages(t *testing.T) {
	for _, data := range [][]byte{
		nil,
		{'I'},                        // insert without a body
		{'I', 0, 0, 0, 1, 'N', 0, 5}, // five columns announced, none present
		{'U', 0, 0, 0, 1, 'K'},
		{'R', 0},
		{'Z', 1, 2, 3}, // unknown type
	} {
		if _, err := parse(data); !errors.Is(err, errProtocol) {
			t.Errorf("parse(%q) = %v, want errProtocol", data, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{'B', 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3})
	f.Add([]byte{'I', 0, 0, 0, 1, 'N', 0, 1, 't', 0, 0, 0, 1, 'x'})
	f.Add([]byte{'D', 0, 0, 0, 1, 'K', 0, 1, 'n'})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = parse(data) // must not panic
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
