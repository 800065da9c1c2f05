package pgcdc

import (
	"slices"
	"strings"

	"go.uber.org/zap"
)

// warnIdentity logs a warning when rule r reads columns of Old that t's
// replica identity does not send: with the default identity, PostgreSQL
// sends only the primary key of the old row (and for an UPDATE only when the
// key changed), so such a rule would silently compute ids from missing
// values.
//
// What a function reads cannot be seen from outside, so Start calls it with
// a probe: every column of Old holds a marker naming the column, and the
// columns whose markers show up in the returned ids or groups are the ones
// it reads. A function that transforms a value beyond recognition (a hash)
// escapes the probe; one that copies or embeds it, the usual case, does not.
func (w *Watcher) warnIdentity(t table, r Rule) {
	sent := t.identityColumns()
	if sent == nil {
		return // FULL: everything is sent
	}
	read := map[string]bool{}
	if r.IDs == nil {
		for _, col := range t.key { // the default ids read Old's primary key on DELETE
			read[col] = true
		}
	} else {
		probeOld(r.IDs, t, read)
	}
	if r.Groups != nil {
		probeOld(r.Groups, t, read)
	}
	var missing []string
	for col := range read {
		if !slices.Contains(sent, col) {
			missing = append(missing, col)
		}
	}
	if len(missing) == 0 {
		return
	}
	slices.Sort(missing)
	w.log.Warn("pgcdc: a rule reads old values that the table's replica identity does not send; Old will lack them on UPDATE and DELETE, so invalidations computed from them are missed. Fix: ALTER TABLE "+
		t.quoted()+" REPLICA IDENTITY FULL",
		zap.String("table", t.name), zap.Strings("old_columns", missing), zap.String("replica_identity", t.identityName()))
}

// probeMarker is what Old holds for column col in a probe.
func probeMarker(col string) string { return "\x1epgcdc-probe-old:" + col + "\x1e" }

// probeOld records in read the columns of Old that fn's results show.
func probeOld(fn func(Change) []string, t table, read map[string]bool) {
	old := make(map[string]string, len(t.columns))
	fresh := make(map[string]string, len(t.columns))
	for _, col := range t.columns {
		old[col] = probeMarker(col)
		fresh[col] = "new"
	}
	for _, c := range []Change{
		{Table: t.name, Op: Update, Old: old, New: fresh},
		{Table: t.name, Op: Delete, Old: old},
	} {
		for _, out := range callProbe(fn, c) {
			for _, col := range t.columns {
				if strings.Contains(out, probeMarker(col)) {
					read[col] = true
				}
			}
		}
	}
}

// callProbe calls fn, treating a panic (a function surprised by the probe
// values) as no result.
func callProbe(fn func(Change) []string, c Change) (out []string) {
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	return fn(c)
}
