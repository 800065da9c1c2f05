package main

// The change-data-capture step, run when a PostgreSQL is given (-postgres or
// DATABASE_URL): a row changed in plain SQL, with no tiercache call, leaves
// both replicas' caches within milliseconds, though their LocalTTL is an
// hour. Everything it creates in the database (a table, a publication, a
// replication slot) goes at the end: a slot left behind would keep WAL.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tiercache/tiercache/invalidation/pgcdc"
	"github.com/tiercache/tiercache/tiered"
)

const (
	cdcTable = "tiercache_example_users"
	cdcSlot  = "tiercache_example"
)

// stepCDC runs the change-data-capture step on replicas a and b.
func stepCDC(ctx context.Context, p *printer, dsn string, a, b *replica) (err error) {
	db, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return fmt.Errorf("cdc: %w", err)
	}
	defer db.Close()
	defer func() {
		if cerr := dropCDC(ctx, db); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if _, err := db.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+cdcTable+` (id text PRIMARY KEY, name text NOT NULL, email text NOT NULL)`); err != nil {
		return fmt.Errorf("cdc: create the table: %w", err)
	}
	if _, err := db.Exec(ctx, `INSERT INTO `+cdcTable+` VALUES ('42', 'Ada', 'ada@example.com') ON CONFLICT (id) DO UPDATE SET name = 'Ada'`); err != nil {
		return fmt.Errorf("cdc: insert: %w", err)
	}
	load := func(ctx context.Context, id string) (User, error) {
		var u User
		err := db.QueryRow(ctx, `SELECT id, name, email FROM `+cdcTable+` WHERE id = $1`, id).Scan(&u.ID, &u.Name, &u.Email)
		if errors.Is(err, pgx.ErrNoRows) {
			return User{}, tiered.ErrNotFound
		}
		return u, err
	}
	var users []*tiered.Keyspace[User]
	for _, r := range []*replica{a, b} {
		k, err := tiered.NewKeyspace(r.c, tiered.Config[User]{Name: namespace + "pguser", TTL: time.Hour, LocalTTL: time.Hour, Loader: load})
		if err != nil {
			return fmt.Errorf("cdc: %w", err)
		}
		// Each replica starts a watcher: one holds the slot, the other is
		// its standby.
		w, err := pgcdc.Start(ctx, pgcdc.Config{ConnString: dsn, Slot: cdcSlot, Publication: cdcSlot,
			Rules: []pgcdc.Rule{{Table: cdcTable, Target: k}}})
		if err != nil {
			return fmt.Errorf("cdc: %w", err) // says what to fix: wal_level, REPLICATION, ...
		}
		defer w.Close()
		users = append(users, k)
	}
	for _, k := range users {
		if _, err := k.Get(ctx, "42"); err != nil {
			return fmt.Errorf("cdc: %w", err)
		}
	}
	if _, err := db.Exec(ctx, `UPDATE `+cdcTable+` SET name = 'Grace' WHERE id = '42'`); err != nil {
		return fmt.Errorf("cdc: %w", err)
	}
	changed := time.Now()
	for i, k := range users {
		if _, err := pollUntil(ctx, 10*time.Second, func() (bool, error) {
			u, err := k.Get(ctx, "42")
			return err == nil && u.Name == "Grace", nil
		}); err != nil {
			return fmt.Errorf("cdc: replica %d does not see an UPDATE made in SQL: %w", i, err)
		}
	}
	p.printf("   11. an UPDATE made in SQL, no tiercache call: both replicas serve the new row %s later (LocalTTL 1h)\n", dur(time.Since(changed)))
	return nil
}

// dropCDC removes what stepCDC created, the replication slot first (it
// is still active for a moment after its watcher closed).
func dropCDC(ctx context.Context, db *pgxpool.Pool) error {
	_, err := pollUntil(ctx, 10*time.Second, func() (bool, error) {
		_, err := db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, cdcSlot)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("cdc: drop the replication slot %s: %w", cdcSlot, err)
	}
	for _, sql := range []string{`DROP PUBLICATION IF EXISTS ` + cdcSlot, `DROP TABLE IF EXISTS ` + cdcTable} {
		if _, err := db.Exec(ctx, sql); err != nil {
			return fmt.Errorf("cdc: %s: %w", sql, err)
		}
	}
	return nil
}
