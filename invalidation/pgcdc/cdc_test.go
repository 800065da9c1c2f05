package pgcdc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// propagation bounds how long a committed change may take to reach every
// peer in these tests (measured: milliseconds; see the benchmarks).
const propagation = 10 * time.Second

// A direct SQL UPDATE, DELETE and INSERT, with no tiercache call, reaches
// every Client, including one that cached "not found".
func TestSQLWritesReachEveryClient(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items VALUES ('1', 'old'), ('2', 'old')`)
	rs := redistest.Start(t)
	a, b, writer := newPeer(t, rs, db), newPeer(t, rs, db), newPeer(t, rs, db)
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "public.items", Target: writer.items}}})

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
	sqlExec(t, db, `UPDATE items SET val = 'new' WHERE id = '1'`)
	sqlExec(t, db, `DELETE FROM items WHERE id = '2'`)
	sqlExec(t, db, `INSERT INTO items VALUES ('3', 'born')`)
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

// A 10,000-row UPDATE in one transaction is one Delete call: one pipelined
// round trip to Redis (of 512-key scripts, tiered's batch size).
func TestLargeTransactionIsOneDelete(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items SELECT g::text, 'v1' FROM generate_series(1, 10000) g`)
	rs := redistest.Start(t)
	hook := &roundTrips{}
	writer, reader := newPeer(t, rs, db, hook), newPeer(t, rs, db)
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: writer.items}}})
	if got := reader.get(t, "7"); got != "v1" {
		t.Fatalf("Get(7) = %q", got)
	}
	if err := writer.items.Delete(ctxT(t), "warm-up"); err != nil { // loads the delete script into Redis
		t.Fatal(err)
	}
	before := w.Stats()
	hook.start()
	sqlExec(t, db, `UPDATE items SET val = 'v2'`)
	eventually(t, propagation, "the transaction is applied", func() bool { return w.Stats().Transactions > before.Transactions })
	trips, cmds := hook.stop()
	after := w.Stats()
	if got := after.Changes - before.Changes; got != 10000 {
		t.Fatalf("changes = %d, want 10000", got)
	}
	if calls := after.Calls - before.Calls; calls != 1 || trips != 1 {
		t.Fatalf("a 10,000-row transaction made %d Invalidator calls and %d Redis round trips (%d commands), want 1 and 1", calls, trips, cmds)
	}
	t.Logf("10,000-row UPDATE: %d Delete call, %d round trip, %d scripts", after.Calls-before.Calls, trips, cmds)
	eventually(t, propagation, "the reader sees v2", func() bool { return reader.get(t, "7") == "v2" })
}

// TRUNCATE invalidates the whole keyspace (an epoch bump), everywhere.
func TestTruncateInvalidatesTheKeyspace(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items VALUES ('a', '1'), ('b', '2')`)
	rs := redistest.Start(t)
	writer, reader := newPeer(t, rs, db), newPeer(t, rs, db)
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: writer.items}}})
	if reader.get(t, "a") != "1" || reader.get(t, "b") != "2" {
		t.Fatal("rows not cached")
	}
	sqlExec(t, db, `TRUNCATE items`)
	eventually(t, propagation, "every cached row is gone", func() bool {
		return reader.get(t, "a") == "" && reader.get(t, "b") == ""
	})
	if st := w.Stats(); st.Changes != 1 || st.Errors != 0 {
		t.Fatalf("stats after a TRUNCATE: %+v", st)
	}
}

// deleteOnly is a target that can delete ids and bump groups but not
// invalidate all: it hides the Keyspace's InvalidateAll.
type deleteOnly struct{ k *tiered.Keyspace[string] }

func (d deleteOnly) Delete(ctx context.Context, ids ...string) error { return d.k.Delete(ctx, ids...) }
func (d deleteOnly) InvalidateGroup(ctx context.Context, g string) error {
	return d.k.InvalidateGroup(ctx, g)
}

// A rule function that panics asks for the whole target; a target that
// cannot invalidate all still has the transaction's other ids invalidated,
// and the panic is counted as an error.
func TestPanickingRuleKeepsTheOtherIDsOfATargetWithoutInvalidateAll(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items VALUES ('a', '1'), ('boom', '2')`)
	rs := redistest.Start(t)
	writer, reader := newPeer(t, rs, db), newPeer(t, rs, db)
	ids := func(c Change) []string {
		if c.New["id"] == "boom" {
			panic("a rule bug")
		}
		return []string{c.New["id"]}
	}
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: deleteOnly{writer.items}, IDs: ids}}})
	if reader.get(t, "a") != "1" {
		t.Fatal("row not cached")
	}
	// One transaction, in whichever order its rows come: the rule panics for
	// 'boom', and the id of 'a' must still be invalidated.
	sqlExec(t, db, `UPDATE items SET val = 'x' || val WHERE id IN ('a', 'boom')`)
	eventually(t, propagation, "the reader sees a's new value", func() bool { return reader.get(t, "a") == "x1" })
	if st := w.Stats(); st.Errors < 2 {
		t.Fatalf("stats after a panicking rule on a target without InvalidateAll: %+v, want the panic and the missing all counted", st)
	}
}

// Custom ids and groups: a rule reading other columns, with REPLICA
// IDENTITY FULL so that Old has them; one InvalidateGroup per distinct group.
func TestCustomIDsAndGroups(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, `CREATE TABLE products (id int PRIMARY KEY, sku text, category text, price int);
		ALTER TABLE products REPLICA IDENTITY FULL;
		INSERT INTO products VALUES (1, 'A1', 'tools', 10), (2, 'B2', 'tools', 20), (3, 'C3', 'toys', 30)`)
	rs := redistest.Start(t)
	newProducts := func() *tiered.Keyspace[string] {
		p := newPeer(t, rs, db)
		k, err := tiered.NewKeyspace(p.client, tiered.Config[string]{
			Name: "product", TTL: time.Hour, LocalTTL: time.Hour,
			Group: func(id string) string { g, _, _ := strings.Cut(id, "/"); return g },
			Loader: func(ctx context.Context, id string) (string, error) {
				_, sku, _ := strings.Cut(id, "/")
				var price string
				err := db.QueryRow(ctx, `SELECT price::text FROM products WHERE sku = $1`, sku).Scan(&price)
				return price, err
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	writer, reader := newProducts(), newProducts()
	var seen []Change
	var mu sync.Mutex
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "products", Target: writer,
		IDs: func(c Change) []string {
			mu.Lock()
			seen = append(seen, c)
			mu.Unlock()
			return []string{c.New["category"] + "/" + c.New["sku"], c.Old["category"] + "/" + c.Old["sku"]}
		},
		Groups: func(c Change) []string { return []string{c.Old["category"]} },
	}}})
	get := func(id string) string {
		v, err := reader.Get(ctxT(t), id)
		if err != nil {
			t.Fatalf("Get(%s): %v", id, err)
		}
		return v
	}
	if get("tools/A1") != "10" || get("tools/B2") != "20" || get("toys/C3") != "30" {
		t.Fatal("not cached")
	}
	before := w.Stats()
	sqlExec(t, db, `UPDATE products SET price = price + 1 WHERE category = 'tools'`)
	sqlExec(t, db, `UPDATE products SET price = 31 WHERE id = 3`)
	eventually(t, propagation, "both categories reloaded", func() bool {
		return get("tools/A1") == "11" && get("tools/B2") == "21" && get("toys/C3") == "31"
	})
	eventually(t, propagation, "both transactions applied", func() bool { return w.Stats().Transactions >= before.Transactions+2 })
	after := w.Stats()
	// Transaction 1: one Delete (2 ids) and one InvalidateGroup ("tools");
	// transaction 2: one Delete and one InvalidateGroup ("toys"), unless
	// the applier merged the two, which makes it fewer.
	if calls := after.Calls - before.Calls; calls < 2 || calls > 4 {
		t.Fatalf("Invalidator calls = %d, want 2 to 4", calls)
	}
	mu.Lock()
	defer mu.Unlock()
	c := seen[len(seen)-1]
	if c.Table != "public.products" || c.Op != Update || c.Old["price"] != "30" || c.New["price"] != "31" || c.LSN == 0 {
		t.Fatalf("the last change the rule saw: %+v", c)
	}
}

// Changes of tables no rule names (a publication FOR ALL TABLES) are
// ignored and counted, and do not hold back the confirmed position.
func TestUnknownTablesAreIgnoredAndCounted(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `CREATE TABLE other (id int PRIMARY KEY); CREATE PUBLICATION everything FOR ALL TABLES`)
	rs := redistest.Start(t)
	w := activeWatcher(t, Config{ConnString: dsn, Publication: "everything", Rules: []Rule{{Table: "items", Target: newPeer(t, rs, db).items}}})
	sqlExec(t, db, `INSERT INTO other SELECT generate_series(1, 3)`)
	var lsn uint64
	if err := db.QueryRow(ctxT(t), `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagation, "the position past the ignored changes is confirmed", func() bool {
		st := w.Stats()
		return st.Ignored == 3 && st.ConfirmedLSN >= lsn
	})
	if st := w.Stats(); st.Changes != 0 || st.Calls != 0 {
		t.Fatalf("ignored changes were invalidated: %+v", st)
	}
}

// While Redis is down nothing is confirmed: PostgreSQL keeps the WAL and
// the invalidation is retried; once Redis is back it lands and only then is
// the position confirmed.
func TestNothingConfirmedWhileRedisIsDown(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items VALUES ('1', 'old')`)
	rs := redistest.Start(t)
	writer := newPeer(t, rs, db)
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: writer.items}},
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond})
	rs.Kill(t)
	sqlExec(t, db, `UPDATE items SET val = 'new' WHERE id = '1'`)
	var lsn uint64
	if err := db.QueryRow(ctxT(t), `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	eventually(t, propagation, "the watcher has retried several times", func() bool { return w.Stats().Retries >= 5 })
	confirmedBelow := func() bool {
		var ok bool
		err := db.QueryRow(ctxT(t), `SELECT confirmed_flush_lsn < $1::text::pg_lsn FROM pg_replication_slots WHERE slot_name = 'tiercache'`,
			pglogrepl.LSN(lsn).String()).Scan(&ok)
		return err == nil && ok
	}
	if st := w.Stats(); st.ConfirmedLSN >= lsn || !confirmedBelow() {
		t.Fatalf("the update's position was confirmed while Redis was down: %+v", st)
	}
	rs.Restart(t)
	eventually(t, propagation, "the invalidation lands and is confirmed", func() bool {
		st := w.Stats()
		return st.Invalidations >= 1 && st.ConfirmedLSN >= lsn && !confirmedBelow()
	})
}

// Close returns promptly even while invalidations are being retried
// (Redis down), and releases the slot for the next consumer at once.
func TestCloseIsBoundedAndReleasesTheSlot(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	rs := redistest.Start(t)
	target := newPeer(t, rs, db).items
	cfg := Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: target}}}
	w := startWatcher(t, cfg)
	eventually(t, propagation, "the watcher holds the slot", func() bool { return w.Stats().Active })
	core, logs := observer.New(zap.InfoLevel)
	ncfg := cfg
	ncfg.Logger = zap.New(core)
	next := startWatcher(t, ncfg)
	eventually(t, propagation, "the second watcher is a standby", func() bool { return next.Stats().Standby })
	rs.Kill(t)
	sqlExec(t, db, `INSERT INTO items VALUES ('1', 'x')`)
	eventually(t, propagation, "the invalidation is being retried", func() bool { return w.Stats().Retries > 0 })
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %v while retrying", took)
	}
	if err := w.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if w.Stats().Active {
		t.Fatal("a closed watcher says it holds the slot")
	}
	eventually(t, 5*time.Second, "the standby takes the released slot", func() bool { return next.Stats().Active })
	if st := next.Stats(); st.Takeovers != 1 || st.Standby {
		t.Fatalf("standby stats after taking over: %+v", st)
	}
	if n := logs.FilterMessageSnippet("took over").Len(); n != 1 {
		t.Fatalf("%d takeover log lines, want 1", n)
	}
}
