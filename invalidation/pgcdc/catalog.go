package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// server is what Start learnt about the database.
type server struct {
	walLevel    string
	version     int // server_version_num, e.g. 150020
	database    string
	role        string
	replication bool // the role may replicate (REPLICATION or superuser)
	walSenders  int
}

func readServer(ctx context.Context, conn *pgx.Conn) (server, error) {
	var s server
	err := conn.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('server_version_num')::int,
		current_database(), current_user, current_setting('max_wal_senders')::int,
		coalesce((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), false)`).
		Scan(&s.walLevel, &s.version, &s.database, &s.role, &s.walSenders, &s.replication)
	if err != nil {
		return s, fmt.Errorf("pgcdc: read the server's settings: %w", err)
	}
	return s, nil
}

// check returns what makes logical replication impossible on s, and how to
// fix it.
func (s server) check() error {
	if s.version < 130000 {
		return fmt.Errorf("pgcdc: PostgreSQL with server_version_num %d is too old: this package needs 13 or newer", s.version)
	}
	if s.walLevel != "logical" {
		return fmt.Errorf("pgcdc: wal_level is %q, logical replication needs \"logical\": run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL (on a managed service, enable logical replication in its parameter group or flags)", s.walLevel)
	}
	if !s.replication {
		return fmt.Errorf("pgcdc: role %q may not start replication: ALTER ROLE %s REPLICATION (or connect as a role that has it; on a managed service grant its replication role, e.g. rds_replication)",
			s.role, pgx.Identifier{s.role}.Sanitize())
	}
	if s.walSenders == 0 {
		return errors.New("pgcdc: max_wal_senders is 0: set it to at least the number of replicas that run a Watcher (plus any other replication) and restart PostgreSQL")
	}
	return nil
}

// table is a rule's table as the catalog describes it.
type table struct {
	oid      uint32
	name     string   // schema.table, as pgoutput names it
	kind     string   // pg_class.relkind: r table, p partitioned
	identity string   // pg_class.relreplident: d default, f full, i index, n nothing
	key      []string // primary key columns, in key order
	identKey []string // columns of the replica identity index (identity i)
	columns  []string
}

const tableQuery = `
SELECT c.oid, n.nspname, c.relname, c.relkind::text, c.relreplident::text,
  coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
    FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
  coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
    FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = c.oid AND i.indisreplident), '{}'),
  coalesce((SELECT array_agg(attname::text ORDER BY attnum) FROM pg_attribute
    WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped), '{}')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass($1)`

// readTable resolves a rule's table name and checks that its row changes
// can be published and identified.
func readTable(ctx context.Context, conn *pgx.Conn, name string) (table, error) {
	var t table
	var schema, rel string
	err := conn.QueryRow(ctx, tableQuery, name).Scan(&t.oid, &schema, &rel, &t.kind, &t.identity, &t.key, &t.identKey, &t.columns)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("pgcdc: table %q does not exist (check the rule's Table, its schema and the role's search_path)", name)
	}
	if err != nil {
		return t, fmt.Errorf("pgcdc: look up table %q: %w", name, err)
	}
	t.name = schema + "." + rel
	if t.kind != "r" && t.kind != "p" {
		return t, fmt.Errorf("pgcdc: %q is not a table (relkind %s): only tables can be published", t.name, t.kind)
	}
	switch {
	case t.identity == "n":
		return t, fmt.Errorf("pgcdc: table %s has REPLICA IDENTITY NOTHING: once published, its UPDATEs and DELETEs would fail; ALTER TABLE %s REPLICA IDENTITY DEFAULT (with a primary key) or FULL",
			t.name, t.quoted())
	case t.identity == "d" && len(t.key) == 0:
		return t, fmt.Errorf("pgcdc: table %s has no primary key and the default replica identity: once published, its UPDATEs and DELETEs would fail; add a primary key or ALTER TABLE %s REPLICA IDENTITY FULL",
			t.name, t.quoted())
	}
	return t, nil
}

// quoted is the table's name as SQL, quoted where needed.
func (t table) quoted() string {
	schema, rel, _ := strings.Cut(t.name, ".")
	return pgx.Identifier{schema, rel}.Sanitize()
}

// identityColumns returns the old columns that the table's replica identity
// sends for UPDATE (when the key changes) and DELETE; nil means all.
func (t table) identityColumns() []string {
	switch t.identity {
	case "f":
		return nil
	case "i":
		return t.identKey
	}
	return t.key
}

// identityName describes the replica identity for a warning.
func (t table) identityName() string {
	switch t.identity {
	case "i":
		return "USING INDEX (" + strings.Join(t.identKey, ", ") + ")"
	case "f":
		return "FULL"
	}
	return "DEFAULT (the primary key)"
}

// isCode reports whether err is a PostgreSQL error with the SQLSTATE code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// isDuplicate reports whether err says another session made the object
// first: duplicate_object, or, when two CREATEs race past the existence
// check, the catalog's unique index.
func isDuplicate(err error) bool {
	return isCode(err, codeDuplicateObject) || isCode(err, codeUniqueViolation)
}

// SQLSTATEs this package reacts to.
const (
	codeDuplicateObject  = "42710" // a publication or slot made concurrently by another replica
	codeUniqueViolation  = "23505" // the same, caught by a catalog index
	codeObjectInUse      = "55006" // the slot is active for another consumer
	codeUndefinedObject  = "42704" // the slot does not exist
	codeInsufficientPriv = "42501"
	codeTooManySlots     = "53400" // configuration_limit_exceeded: all replication slots are in use
)
