package pgcdc

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// Table names that need quoting, a partitioned table (changes arrive under
// the root's name: the publication is made with publish_via_partition_root)
// and a composite primary key (ids joined with ":").
func TestQuotedPartitionedCompositeKey(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, `CREATE SCHEMA "Shop-1";
		CREATE TABLE "Shop-1"."Order Lines" (region text, id int, qty int, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
		CREATE TABLE "Shop-1".lines_eu PARTITION OF "Shop-1"."Order Lines" FOR VALUES IN ('eu');
		CREATE TABLE "Shop-1".lines_us PARTITION OF "Shop-1"."Order Lines" FOR VALUES IN ('us');
		INSERT INTO "Shop-1"."Order Lines" VALUES ('eu', 1, 5), ('us', 1, 7)`)
	rs := redistest.Start(t)
	newLines := func() *tiered.Keyspace[string] {
		p := newPeer(t, rs, db)
		k, err := tiered.NewKeyspace(p.client, tiered.Config[string]{
			Name: "line", TTL: time.Hour, LocalTTL: time.Hour,
			Loader: func(ctx context.Context, id string) (string, error) {
				region, n, _ := strings.Cut(id, ":")
				var qty string
				err := db.QueryRow(ctx, `SELECT qty::text FROM "Shop-1"."Order Lines" WHERE region = $1 AND id = $2::int`, region, n).Scan(&qty)
				return qty, err
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	writer, reader := newLines(), newLines()
	w := activeWatcher(t, Config{ConnString: dsn, Rules: []Rule{{Table: `"Shop-1"."Order Lines"`, Target: writer}}})
	for id, want := range map[string]string{"eu:1": "5", "us:1": "7"} {
		if got, err := reader.Get(ctxT(t), id); err != nil || got != want {
			t.Fatalf("Get(%s) = %q, %v; want %s", id, got, err, want)
		}
	}
	sqlExec(t, db, `UPDATE "Shop-1"."Order Lines" SET qty = qty + 1`)
	eventually(t, propagation, "both partitions' rows reloaded", func() bool {
		eu, err1 := reader.Get(ctxT(t), "eu:1")
		us, err2 := reader.Get(ctxT(t), "us:1")
		return err1 == nil && err2 == nil && eu == "6" && us == "8"
	})
	if st := w.Stats(); st.Changes != 2 || st.Ignored != 0 {
		t.Fatalf("stats: %+v (changes must arrive under the root's name)", st)
	}
}

// Replicas that Start at the same moment on a fresh database create the
// publication and the slot once between them; one holds the slot.
func TestConcurrentStartsCreateOnce(t *testing.T) {
	dsn := newDB(t)
	db := pool(t, dsn)
	sqlExec(t, db, itemsSchema)
	const replicas = 3
	ws := make([]*Watcher, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i], errs[i] = Start(ctxT(t), Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: nopTarget{}}},
				StandbyRetry: 100 * time.Millisecond})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		t.Cleanup(func() { _ = ws[i].Close() })
	}
	eventually(t, propagation, "one holds the slot, the others are standbys", func() bool {
		active, standby := 0, 0
		for _, w := range ws {
			st := w.Stats()
			if st.Active {
				active++
			}
			if st.Standby {
				standby++
			}
		}
		return active == 1 && standby == replicas-1
	})
}
