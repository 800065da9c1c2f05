package pgcdc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tiercache/tiercache/internal/pgtest"
)

// nopTarget is an Invalidator that does nothing, for Start's checks.
type nopTarget struct{}

func (nopTarget) Delete(context.Context, ...string) error       { return nil }
func (nopTarget) InvalidateGroup(context.Context, string) error { return nil }

// startErr runs Start, which must fail, and returns its error.
func startErr(t *testing.T, cfg Config) error {
	t.Helper()
	w, err := Start(ctxT(t), cfg)
	if err == nil {
		w.Close()
		t.Fatal("Start succeeded")
	}
	return err
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestStartErrors(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	sqlExec(t, db, `CREATE TABLE nokey (a text)`)
	sqlExec(t, db, `CREATE TABLE nothing (id text PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING`)
	sqlExec(t, db, `CREATE ROLE app LOGIN; GRANT ALL ON items TO app`)
	items := []Rule{{Table: "public.items", Target: nopTarget{}}}

	t.Run("table missing", func(t *testing.T) {
		err := startErr(t, Config{ConnString: dsn, Rules: []Rule{{Table: "public.nope", Target: nopTarget{}}}})
		wantErr(t, err, `table "public.nope" does not exist`)
	})
	t.Run("no replication rights", func(t *testing.T) {
		err := startErr(t, Config{ConnString: strings.Replace(dsn, "postgres@", "app@", 1), Rules: items})
		wantErr(t, err, `role "app" may not start replication`, `ALTER ROLE "app" REPLICATION`)
	})
	t.Run("no primary key", func(t *testing.T) {
		err := startErr(t, Config{ConnString: dsn, Rules: []Rule{{Table: "nokey", Target: nopTarget{}}}})
		wantErr(t, err, "public.nokey has no primary key", "REPLICA IDENTITY FULL")
	})
	t.Run("replica identity nothing", func(t *testing.T) {
		err := startErr(t, Config{ConnString: dsn, Rules: []Rule{{Table: "nothing", Target: nopTarget{}}}})
		wantErr(t, err, "REPLICA IDENTITY NOTHING", "would fail")
	})
	t.Run("not a table", func(t *testing.T) {
		sqlExec(t, db, `CREATE VIEW v AS SELECT 1 AS x`)
		wantErr(t, startErr(t, Config{ConnString: dsn, Rules: []Rule{{Table: "v", Target: nopTarget{}}}}), "is not a table")
	})
	t.Run("slot of another plugin", func(t *testing.T) {
		sqlExec(t, db, `SELECT pg_create_logical_replication_slot('other', 'test_decoding')`)
		err := startErr(t, Config{ConnString: dsn, Slot: "other", Rules: items})
		wantErr(t, err, `replication slot "other" exists`, `"test_decoding"`)
	})
	t.Run("publication without deletes", func(t *testing.T) {
		sqlExec(t, db, `CREATE PUBLICATION nodel FOR TABLE items WITH (publish = 'insert, update')`)
		err := startErr(t, Config{ConnString: dsn, Publication: "nodel", Rules: items})
		wantErr(t, err, `publication "nodel" does not publish every kind of change`, `ALTER PUBLICATION "nodel" SET`)
	})
	for name, cfg := range map[string]Config{
		"no conn string": {Rules: items},
		"no rules":       {ConnString: dsn},
		"no target":      {ConnString: dsn, Rules: []Rule{{Table: "items"}}},
		"no table":       {ConnString: dsn, Rules: []Rule{{Target: nopTarget{}}}},
		"bad slot name":  {ConnString: dsn, Slot: "Bad-Slot", Rules: items},
		"bad conn":       {ConnString: "postgres://%zz", Rules: items},
	} {
		t.Run(name, func(t *testing.T) {
			if err := startErr(t, cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
		})
	}
	t.Run("two rules for one table", func(t *testing.T) {
		err := startErr(t, Config{ConnString: dsn, Rules: append(items, Rule{Table: "items", Target: nopTarget{}})})
		wantErr(t, err, "two rules name table public.items")
	})
	// The failed Starts created no slot: every check comes before it.
	var n int
	if err := db.QueryRow(ctxT(t), `SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'tiercache' AND database = current_database()`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("slots named tiercache after failed Starts: %d, %v", n, err)
	}
}

func TestStartErrorWalLevel(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"wal_level": "replica"}})
	srv.Psql(t, "", itemsSchema)
	err := startErr(t, Config{ConnString: srv.ConnString(""), Rules: []Rule{{Table: "items", Target: nopTarget{}}}})
	wantErr(t, err, `wal_level is "replica"`, "ALTER SYSTEM SET wal_level = logical", "restart")
}

func TestStartRejectsUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A port nothing listens on (the server below was stopped).
	srv := pgtest.Start(t)
	dsn := srv.ConnString("")
	srv.Stop(t)
	_, err := Start(ctx, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: nopTarget{}}}})
	if err == nil || !strings.Contains(err.Error(), "pgcdc: connect") {
		t.Fatalf("Start against a stopped server = %v, want a connect error", err)
	}
}

// A rule that reads an old column the replica identity does not send gets a
// warning at Start naming the table, the column and the fix; with
// REPLICA IDENTITY FULL it does not.
func TestReplicaIdentityWarning(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, `CREATE TABLE products (id int PRIMARY KEY, sku text, category text)`)
	rule := Rule{Table: "public.products", Target: nopTarget{},
		IDs:    func(c Change) []string { return []string{c.New["sku"], c.Old["sku"]} },
		Groups: func(c Change) []string { return []string{"cat/" + c.Old["category"]} },
	}
	warnings := func() []observer.LoggedEntry {
		core, logs := observer.New(zap.WarnLevel)
		w := startWatcher(t, Config{ConnString: dsn, Rules: []Rule{rule}, Logger: zap.New(core)})
		w.Close()
		return logs.FilterMessageSnippet("replica identity").All()
	}
	got := warnings()
	if len(got) != 1 {
		t.Fatalf("got %d replica identity warnings, want 1: %v", len(got), got)
	}
	fields := got[0].ContextMap()
	if fields["table"] != "public.products" || !strings.Contains(got[0].Message, `ALTER TABLE "public"."products" REPLICA IDENTITY FULL`) {
		t.Fatalf("the warning does not name the table and the fix: %q %v", got[0].Message, fields)
	}
	if cols := strings.Join(toStrings(fields["old_columns"]), ","); cols != "category,sku" {
		t.Fatalf("the warning names old columns %q, want category,sku", cols)
	}
	sqlExec(t, db, `ALTER TABLE products REPLICA IDENTITY FULL`)
	if got := warnings(); len(got) != 0 {
		t.Fatalf("warnings with REPLICA IDENTITY FULL: %v", got)
	}
	// The primary key alone is what the default identity sends: no warning.
	rule.IDs, rule.Groups = nil, nil
	sqlExec(t, db, `ALTER TABLE products REPLICA IDENTITY DEFAULT`)
	if got := warnings(); len(got) != 0 {
		t.Fatalf("warnings for the default ids: %v", got)
	}
}

func toStrings(v any) []string {
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			out[i], _ = x.(string)
		}
		return out
	}
	return nil
}
