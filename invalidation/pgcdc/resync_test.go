package pgcdc

import (
	"testing"

	"github.com/tiercache/tiercache/internal/pgtest"
	"github.com/tiercache/tiercache/internal/redistest"
)

// A slot that retained more than max_slot_wal_keep_size while no consumer
// ran is invalidated by PostgreSQL: its changes are gone. The next Watcher
// makes the slot again and invalidates every target whole, so nothing
// stale survives the lost changes.
func TestInvalidatedSlotIsMadeAgainAndResyncs(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"max_slot_wal_keep_size": "1MB", "max_wal_size": "32MB", "min_wal_size": "32MB"}})
	dsn := srv.ConnString("")
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `INSERT INTO items VALUES ('1', 'old')`)
	rs := redistest.Start(t)
	writer, reader := newPeer(t, rs, db), newPeer(t, rs, db)
	cfg := Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: writer.items}}}
	activeWatcher(t, cfg).Close()
	if reader.get(t, "1") != "old" {
		t.Fatal("not cached")
	}
	// While no consumer runs: the change to watch, then enough other WAL
	// for checkpoints to invalidate the slot.
	sqlExec(t, db, `UPDATE items SET val = 'new' WHERE id = '1'`)
	sqlExec(t, db, `CREATE TABLE noise (pad text)`)
	eventually(t, propagation, "the slot is invalidated", func() bool {
		sqlExec(t, db, `INSERT INTO noise SELECT repeat('x', 1000) FROM generate_series(1, 5000); CHECKPOINT`)
		var status string
		err := db.QueryRow(ctxT(t), `SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'tiercache'`).Scan(&status)
		return err == nil && status == "lost"
	})
	w := activeWatcher(t, cfg)
	eventually(t, propagation, "the reader sees the change the slot lost", func() bool { return reader.get(t, "1") == "new" })
	if st := w.Stats(); st.Resyncs != 1 || st.Errors != 0 {
		t.Fatalf("stats after the resync: %+v", st)
	}
	// The new slot works like the old one.
	sqlExec(t, db, `UPDATE items SET val = 'newer' WHERE id = '1'`)
	eventually(t, propagation, "the reader sees the next change", func() bool { return reader.get(t, "1") == "newer" })
}
