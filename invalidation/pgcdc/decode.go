package pgcdc

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/tiercache/tiercache/keys"
)

// errProtocol marks a replication message this package cannot make sense
// of. The session ends and a new one resumes from the last confirmed
// position, so nothing is lost.
var errProtocol = errors.New("pgcdc: unexpected replication message")

// relation is what a pgoutput Relation message said about a table.
type relation struct {
	table   string
	rule    *boundRule // nil: no rule names the table
	columns []string
}

// decoder turns one session's pgoutput messages (protocol version 1) into
// committed batches. It is owned by the session's goroutine.
type decoder struct {
	w   *Watcher
	rel map[uint32]*relation // by relation OID, as announced in this session
	txn *batch               // the open transaction; nil between transactions
	lsn uint64               // the open transaction's commit LSN
}

func newDecoder(w *Watcher) *decoder {
	return &decoder{w: w, rel: make(map[uint32]*relation)}
}

// inTxn reports whether a transaction's BEGIN was seen and its COMMIT not yet.
func (d *decoder) inTxn() bool { return d.txn != nil }

// handle applies one message; it returns the transaction's batch on COMMIT.
func (d *decoder) handle(data []byte) (*batch, error) {
	m, err := decodeMessage(data)
	if err != nil {
		return nil, err
	}
	switch m.kind {
	case msgBegin:
		d.txn, d.lsn = newBatch(d.w.limits), m.finalLSN
	case msgCommit:
		if d.txn == nil {
			return nil, fmt.Errorf("%w: COMMIT outside a transaction", errProtocol)
		}
		b := d.txn
		b.end, b.txns = m.endLSN, 1
		d.txn = nil
		return b, nil
	case msgRelation:
		// Sent before a table's first change in a session, and again after
		// its schema changed.
		d.rel[m.relID] = &relation{table: m.relation, columns: m.columns, rule: d.w.rules[m.relation]}
	case msgInsert:
		return nil, d.change(m, Insert)
	case msgUpdate:
		return nil, d.change(m, Update)
	case msgDelete:
		return nil, d.change(m, Delete)
	case msgTruncate:
		return nil, d.truncate(m.relIDs)
	}
	// Origin, Type and logical decoding messages carry nothing to invalidate.
	return nil, nil
}

// relationOf returns the announced relation of a change.
func (d *decoder) relationOf(oid uint32) (*relation, error) {
	if d.txn == nil {
		return nil, fmt.Errorf("%w: a change outside a transaction", errProtocol)
	}
	r := d.rel[oid]
	if r == nil {
		return nil, fmt.Errorf("%w: a change of relation %d, which was never announced", errProtocol, oid)
	}
	return r, nil
}

// change runs the table's rule on one row change.
func (d *decoder) change(m pgMessage, op Op) error {
	r, err := d.relationOf(m.relID)
	if err != nil {
		return err
	}
	if r.rule == nil {
		d.w.st.ignored.Add(1)
		return nil
	}
	d.w.st.changes.Add(1)
	d.txn.changes++
	c := Change{Table: r.table, Op: op, Old: rowOf(r.columns, m.old), New: rowOf(r.columns, m.new), LSN: d.lsn}
	d.collect(r.rule, c)
	return nil
}

// truncate invalidates whole the targets of the truncated tables.
func (d *decoder) truncate(oids []uint32) error {
	for _, oid := range oids {
		r, err := d.relationOf(oid)
		if err != nil {
			return err
		}
		if r.rule == nil {
			d.w.st.ignored.Add(1)
			continue
		}
		d.w.st.changes.Add(1)
		d.txn.changes++
		d.txn.invalidateAll(r.rule.target)
	}
	return nil
}

// rowOf maps a tuple's columns to their text values; NULLs and unchanged
// TOASTed values are left out.
func rowOf(names []string, cols []column) map[string]string {
	if cols == nil {
		return nil
	}
	row := make(map[string]string, len(cols))
	for i, c := range cols {
		if i < len(names) && (c.kind == 't' || c.kind == 'b') {
			row[names[i]] = string(c.data)
		}
	}
	return row
}

// collect adds what rule r asks for change c to the open transaction. A
// rule function that panics cannot say what changed, so the target's whole
// keyspace is invalidated instead.
func (d *decoder) collect(r *boundRule, c Change) {
	ids, groups, err := callRule(r, c)
	if err != nil {
		d.w.st.errors.Add(1)
		d.w.warn.Error("pgcdc: a rule function panicked; invalidating the whole target instead",
			zap.String("table", c.Table), zap.Stringer("op", c.Op), zap.Error(err))
		d.txn.invalidateAll(r.target)
		return
	}
	for _, id := range ids {
		if d.valid(c, "id", id) {
			d.txn.addID(r.target, id)
		}
	}
	for _, g := range groups {
		if d.valid(c, "group", g) {
			d.txn.addGroup(r.target, g)
		}
	}
}

// valid reports whether s can name cached data; an empty or invalid one is
// skipped (nothing can be cached under it) and counted.
func (d *decoder) valid(c Change, what, s string) bool {
	if s == "" {
		return false
	}
	if err := keys.Validate(s); err != nil {
		d.w.st.skipped.Add(1)
		d.w.warn.Warn("pgcdc: a rule returned an "+what+" that is not a valid tiercache key; skipped",
			zap.String("table", c.Table), zap.Error(err))
		return false
	}
	return true
}

// callRule calls r's functions, turning a panic into an error.
func callRule(r *boundRule, c Change) (ids, groups []string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	ids = r.ids(c)
	if r.groups != nil {
		groups = r.groups(c)
	}
	return ids, groups, nil
}
