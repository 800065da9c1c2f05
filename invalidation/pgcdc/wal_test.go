package pgcdc

import (
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// Quiet watched tables while another table takes heavy writes: keepalive
// acknowledgements let the slot's confirmed position follow the server, so
// the WAL the slot retains stays bounded instead of growing with the writes.
func TestQuietTablesDoNotRetainWAL(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `CREATE TABLE noise (id bigserial PRIMARY KEY, pad text)`) // in no publication
	rs := redistest.Start(t)
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: newPeer(t, rs, db).items}}})

	const (
		rounds    = 40
		perRound  = 2000 // rows of 1 kB: about 2.5 MB of WAL a round, 100 MB in all
		bound     = 32 << 20
		segment16 = 16 << 20
	)
	var written, worst int64
	var startLSN, endLSN int64
	lsn := func() int64 {
		var v int64
		if err := db.QueryRow(ctxT(t), `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	startLSN = lsn()
	for i := 0; i < rounds; i++ {
		sqlExec(t, db, `INSERT INTO noise (pad) SELECT repeat('x', 1000) FROM generate_series(1, $1)`, perRound)
		if i%8 == 7 {
			sqlExec(t, db, `CHECKPOINT`) // logs the running transactions the slot's restart point advances on
		}
		_, _, unconfirmed := slotLSNs(t, db, "tiercache")
		worst = max(worst, unconfirmed)
	}
	endLSN = lsn()
	written = endLSN - startLSN
	if written < 2*bound {
		t.Fatalf("the noise wrote only %d bytes of WAL; the test needs far more than the bound", written)
	}
	sqlExec(t, db, `CHECKPOINT`)
	eventually(t, 20*time.Second, "the slot confirms past the noise and its restart point follows", func() bool {
		_, retained, unconfirmed := slotLSNs(t, db, "tiercache")
		if retained > bound {
			sqlExec(t, db, `CHECKPOINT`)
		}
		return unconfirmed < segment16 && retained <= bound && int64(w.Stats().ConfirmedLSN) >= endLSN
	})
	_, retained, _ := slotLSNs(t, db, "tiercache")
	st := w.Stats()
	t.Logf("noise wrote %d MB of WAL; unconfirmed at worst %d MB while writing; retained after: %d MB; LagBytes %d",
		written>>20, worst>>20, retained>>20, st.LagBytes)
	if worst > bound {
		t.Fatalf("while the noise was written the slot fell %d bytes behind, more than the bound %d", worst, bound)
	}
	if st.LagBytes > segment16 {
		t.Fatalf("the watcher did not confirm past the noise: %+v (noise ended at %d)", st, endLSN)
	}
}
