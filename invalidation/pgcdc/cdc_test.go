package pgcdc

import (
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// propagation bounds how long a committed change may take to reach every
// peer in these tests (measured: milliseconds; see the benchmarks).
const propagation = 10 * time.Second

// A direct SQL UPDATE, DELETE and INSERT, with no tiercache call, reaches
// every Client, including one that cached "not found".
func TestSQLWritesReachEveryClient(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	exec(t, db, itemsSchema)
	exec(t, db, `INSERT INTO items VALUES ('1', 'old'), ('2', 'old')`)
	rs := redistest.Start(t)
	a, b, writer := newPeer(t, rs, db), newPeer(t, rs, db), newPeer(t, rs, db)
	w := startWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "public.items", Target: writer.items}}})
	eventually(t, propagation, "the watcher holds the slot", func() bool { return w.Stats().Active })

	for _, p := range []*peer{a, b} {
		for _, id := range []string{"1", "2"} {
			if got := p.get(t, id); got != "old" {
				t.Fatalf("Get(%s) = %q, want old", id, got)
			}
		}
		if got := p.get(t, "3"); got != "" { // cached "not found" (NegativeTTL)
			t.Fatalf("Get(3) = %q before the insert", got)
		}
	}
	exec(t, db, `UPDATE items SET val = 'new' WHERE id = '1'`)
	exec(t, db, `DELETE FROM items WHERE id = '2'`)
	exec(t, db, `INSERT INTO items VALUES ('3', 'born')`)
	for i, p := range []*peer{a, b} {
		eventually(t, propagation, fmt.Sprintf("client %d sees the UPDATE, DELETE and INSERT", i), func() bool {
			return p.get(t, "1") == "new" && p.get(t, "2") == "" && p.get(t, "3") == "born"
		})
	}
	st := w.Stats()
	if st.Changes != 3 || st.Transactions < 3 || st.Invalidations < 3 || st.ConfirmedLSN == 0 || st.Errors != 0 {
		t.Fatalf("stats after three single-row transactions: %+v", st)
	}
}
