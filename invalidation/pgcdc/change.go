package pgcdc

import (
	"context"
	"strconv"
	"strings"

	"github.com/tiercache/tiercache/keys"
)

// Op is the kind of a row change.
type Op uint8

const (
	// Insert is an INSERT (or the insert half of an upsert).
	Insert Op = iota + 1
	// Update is an UPDATE.
	Update
	// Delete is a DELETE.
	Delete
	// Truncate is a TRUNCATE of the whole table. Rules' IDs and Groups are
	// not called for it: the target's whole keyspace is invalidated.
	Truncate
)

// String returns "insert", "update", "delete" or "truncate".
func (o Op) String() string {
	switch o {
	case Insert:
		return "insert"
	case Update:
		return "update"
	case Delete:
		return "delete"
	case Truncate:
		return "truncate"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Change is one committed row change, as a rule's IDs and Groups see it.
type Change struct {
	// Table is the schema-qualified table name, e.g. "public.users".
	Table string
	// Op is what happened to the row.
	Op Op
	// Old holds what the table's replica identity sends of the row before
	// the change: for DELETE, and for UPDATE when the key changed or the
	// identity is FULL. With the default identity that is only the primary
	// key columns. New holds the row after an INSERT or UPDATE. Values are
	// PostgreSQL's text form; NULLs and unchanged TOASTed values are absent.
	// The maps must not be modified or kept after the call.
	Old, New map[string]string
	// LSN is the commit's LSN: every change of one transaction has the same.
	LSN uint64
}

// Invalidator is what a rule invalidates: *tiered.Keyspace[V] satisfies it.
// Each attempt calls Delete once per transaction (or run of transactions
// queued behind a slow call) with every id of it, and InvalidateGroup once
// per distinct group; what failed is called again until it returns nil.
type Invalidator interface {
	Delete(ctx context.Context, ids ...string) error
	InvalidateGroup(ctx context.Context, group string) error
}

// AllInvalidator is the optional interface of targets that can invalidate
// every value at once (*tiered.Keyspace[V] can: an epoch bump). A TRUNCATE,
// a rule function that panics, or more pending ids than MaxPendingIDs use
// it. A target without it logs an error for a TRUNCATE or a rule function
// that panics; the ids and groups known for it are still invalidated.
type AllInvalidator interface {
	InvalidateAll(ctx context.Context) error
}

// KeySep joins the columns of a composite primary key into one id.
const KeySep = keys.Sep

// primaryKeyIDs is the default Rule.IDs: the key of New and, when present
// and different, of Old.
func primaryKeyIDs(key []string) func(Change) []string {
	return func(c Change) []string {
		ids := make([]string, 0, 2)
		n, nok := keyOf(key, c.New)
		if nok {
			ids = append(ids, n)
		}
		if o, ook := keyOf(key, c.Old); ook && (!nok || o != n) {
			ids = append(ids, o)
		}
		return ids
	}
}

// keyOf joins row's key columns; false when one is absent.
func keyOf(key []string, row map[string]string) (string, bool) {
	if len(row) == 0 || len(key) == 0 {
		return "", false
	}
	if len(key) == 1 {
		v, ok := row[key[0]]
		return v, ok
	}
	parts := make([]string, len(key))
	for i, col := range key {
		v, ok := row[col]
		if !ok {
			return "", false
		}
		parts[i] = v
	}
	return strings.Join(parts, KeySep), true
}
