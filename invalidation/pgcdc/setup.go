package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// publish makes sure publication pub streams every change of tables:
// created FOR TABLE them when missing, the missing ones added otherwise.
func publish(ctx context.Context, conn *pgx.Conn, pub string, tables []table) error {
	for attempt := 0; ; attempt++ {
		var all, ins, upd, del, trunc, viaRoot bool
		err := conn.QueryRow(ctx, `SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate, pubviaroot
			FROM pg_publication WHERE pubname = $1`, pub).Scan(&all, &ins, &upd, &del, &trunc, &viaRoot)
		if errors.Is(err, pgx.ErrNoRows) {
			err = createPublication(ctx, conn, pub, tables)
			if isDuplicate(err) && attempt == 0 {
				continue // another replica created it a moment ago: check that one
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("pgcdc: read publication %q: %w", pub, err)
		}
		if !(ins && upd && del && trunc) {
			return fmt.Errorf("pgcdc: publication %q does not publish every kind of change (insert %v, update %v, delete %v, truncate %v): ALTER PUBLICATION %s SET (publish = 'insert, update, delete, truncate')",
				pub, ins, upd, del, trunc, pgx.Identifier{pub}.Sanitize())
		}
		for _, t := range tables {
			if t.kind == "p" && !viaRoot {
				return fmt.Errorf("pgcdc: table %s is partitioned and publication %q publishes its partitions under their own names: ALTER PUBLICATION %s SET (publish_via_partition_root = true)",
					t.name, pub, pgx.Identifier{pub}.Sanitize())
			}
		}
		if all {
			return nil
		}
		return addTables(ctx, conn, pub, tables)
	}
}

func createPublication(ctx context.Context, conn *pgx.Conn, pub string, tables []table) error {
	names := make([]string, len(tables))
	for i, t := range tables {
		names[i] = t.quoted()
	}
	sql := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)",
		pgx.Identifier{pub}.Sanitize(), strings.Join(names, ", "))
	if _, err := conn.Exec(ctx, sql); err != nil {
		if isDuplicate(err) {
			return err
		}
		return fmt.Errorf("pgcdc: create publication %q: %w (it needs CREATE on the database and ownership of the tables; or have their owner run: %s)", pub, err, sql)
	}
	return nil
}

// addTables adds to publication pub those of tables it lacks.
func addTables(ctx context.Context, conn *pgx.Conn, pub string, tables []table) error {
	rows, err := conn.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return fmt.Errorf("pgcdc: read the tables of publication %q: %w", pub, err)
	}
	published, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("pgcdc: read the tables of publication %q: %w", pub, err)
	}
	have := make(map[string]bool, len(published))
	for _, name := range published {
		have[name] = true
	}
	var missing []string
	for _, t := range tables {
		if !have[t.name] {
			missing = append(missing, t.quoted())
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sql := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s", pgx.Identifier{pub}.Sanitize(), strings.Join(missing, ", "))
	if _, err := conn.Exec(ctx, sql); err != nil && !isDuplicate(err) {
		return fmt.Errorf("pgcdc: publication %q lacks %s and adding them failed: %w (have the owner of the tables run: %s)",
			pub, strings.Join(missing, ", "), err, sql)
	}
	return nil
}

// A slot another replica is creating shows no plugin yet; ensureSlot waits
// for it this often, this many times.
const (
	slotCreatingPoll  = 50 * time.Millisecond
	slotCreatingPolls = 100
)

// ensureSlot makes sure slot is a logical pgoutput slot of this database,
// creating it when missing.
func ensureSlot(ctx context.Context, conn *pgx.Conn, slot, database string) error {
	for attempt := 0; ; attempt++ {
		var plugin, kind, db *string
		err := conn.QueryRow(ctx, `SELECT plugin, slot_type, database FROM pg_replication_slots WHERE slot_name = $1`, slot).
			Scan(&plugin, &kind, &db)
		if errors.Is(err, pgx.ErrNoRows) {
			_, err = conn.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
			switch {
			case err == nil:
				return nil
			case isDuplicate(err) && attempt == 0:
				continue // another replica created it a moment ago: check that one
			case isCode(err, codeTooManySlots):
				return fmt.Errorf("pgcdc: create replication slot %q: %w (raise max_replication_slots, or drop unused slots)", slot, err)
			}
			return fmt.Errorf("pgcdc: create replication slot %q: %w", slot, err)
		}
		if err != nil {
			return fmt.Errorf("pgcdc: read replication slot %q: %w", slot, err)
		}
		if deref(plugin) == "" && deref(kind) == "logical" && attempt < slotCreatingPolls {
			// Another replica is creating it this moment: the plugin is
			// recorded once its decoding context is ready.
			if !sleep(ctx, slotCreatingPoll) {
				return ctx.Err()
			}
			continue
		}
		if deref(kind) != "logical" || deref(plugin) != "pgoutput" || deref(db) != database {
			return fmt.Errorf("pgcdc: replication slot %q exists but is a %s slot of plugin %q on database %q; this package needs a logical pgoutput slot on %q: choose another Config.Slot (slot names are per server, not per database)",
				slot, deref(kind), deref(plugin), deref(db), database)
		}
		return nil
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
