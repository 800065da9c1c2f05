package pgcdc

import (
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// slotFloor returns the slot's confirmed position, from which a session
// (and a standby taking over) resumes. A slot that has vanished (dropped by
// hand) or was invalidated (it retained more than max_slot_wal_keep_size)
// is made again; changes in between are unknown, so every target is then
// invalidated whole (a resync).
func (w *Watcher) slotFloor(conn *pgconn.PgConn) (uint64, error) {
	res, err := conn.Exec(w.ctx, "SELECT confirmed_flush_lsn, wal_status, active FROM pg_replication_slots WHERE slot_name = '"+w.cfg.Slot+"'").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("read slot %q: %w", w.cfg.Slot, err)
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("read slot %q: %d results", w.cfg.Slot, len(res))
	}
	rows := res[0].Rows
	switch {
	case len(rows) == 0:
		return 0, w.resync(conn, "the replication slot had vanished (dropped by hand?)")
	case string(rows[0][1]) == "lost" && string(rows[0][2]) == "f":
		err := pglogrepl.DropReplicationSlot(w.ctx, conn, w.cfg.Slot, pglogrepl.DropReplicationSlotOptions{})
		if err != nil && !isCode(err, codeUndefinedObject) {
			return 0, fmt.Errorf("drop invalidated slot %q: %w", w.cfg.Slot, err)
		}
		return 0, w.resync(conn, "the replication slot was invalidated: it retained more WAL than max_slot_wal_keep_size while its consumers were down or behind")
	case rows[0][0] == nil:
		return 0, nil
	}
	lsn, err := pglogrepl.ParseLSN(string(rows[0][0]))
	if err != nil {
		return 0, fmt.Errorf("read slot %q: %w", w.cfg.Slot, err)
	}
	return uint64(lsn), nil
}

// resync creates the slot again and invalidates every target whole.
func (w *Watcher) resync(conn *pgconn.PgConn, why string) error {
	_, err := pglogrepl.CreateReplicationSlot(w.ctx, conn, w.cfg.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	if err != nil && !isDuplicate(err) {
		return fmt.Errorf("re-create slot %q: %w", w.cfg.Slot, err)
	}
	w.st.resyncs.Add(1)
	w.log.Error("pgcdc: "+why+"; it was created again, and since the changes in between are unknown every target is invalidated whole",
		zap.String("slot", w.cfg.Slot))
	b := newBatch(w.limits)
	for t := range w.targets {
		b.invalidateAll(t)
	}
	w.led.commit(b)
	return nil
}
