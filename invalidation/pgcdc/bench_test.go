package pgcdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// BenchmarkCommitToEviction measures, for single-row UPDATEs committed at
// 1,000 transactions per second, the time from COMMIT returning to the old
// value being gone from a peer's local tier: p50, p99 and max, in ms. Each
// transaction changes a row of its own that the peer holds locally (Set
// beforehand); a poller checks the outstanding rows every ~250µs, so the
// figures include up to that much polling delay. to-delete-* is the part
// from COMMIT returning to the Watcher calling Delete (PostgreSQL's
// walsender and the Watcher); the rest is Redis and the bus. Run with
// -benchtime 5000x (5 s at the target rate).
func BenchmarkCommitToEviction(b *testing.B) {
	const rate = 1000 // transactions per second
	n := b.N
	dsn := newDB(b)
	db := pool(b, dsn)
	sqlExec(b, db, itemsSchema)
	sqlExec(b, db, `INSERT INTO items SELECT g::text, 'old' FROM generate_series(0, $1 - 1) g`, n)
	rs := redistest.Start(b)
	writer, observer := newPeer(b, rs, db), newPeer(b, rs, db)
	// The observer's keyspace has no Loader: once invalidated, Get returns
	// ErrNotFound instead of reading the table, so the poll is cheap.
	ctx := context.Background()
	local, err := tiered.NewKeyspace(observer.client, tiered.Config[string]{Name: "bench", TTL: time.Hour, LocalTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	target, err := tiered.NewKeyspace(writer.client, tiered.Config[string]{Name: "bench", TTL: time.Hour, LocalTTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	// The target records when the Watcher called Delete for each row, which
	// splits the latency into commit-to-Delete (PostgreSQL and the Watcher)
	// and Delete-to-eviction (Redis and the bus).
	rec := &recordingTarget{Keyspace: target, called: make([]atomic.Int64, n)}
	activeWatcher(b, Config{ConnString: dsn, Rules: []Rule{{Table: "items", Target: rec}}})
	for i := 0; i < n; i++ {
		if err := local.Set(ctx, strconv.Itoa(i), "old"); err != nil {
			b.Fatal(err)
		}
	}
	committed := make([]atomic.Int64, n) // UnixNano when the UPDATE returned; 0 before
	latency := make([]time.Duration, n)
	toDelete := make([]time.Duration, n)
	jobs := make(chan int, n)
	var workers sync.WaitGroup
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range jobs {
				if _, err := db.Exec(ctx, `UPDATE items SET val = 'new' WHERE id = $1`, strconv.Itoa(i)); err != nil {
					b.Error(err)
					return
				}
				committed[i].Store(time.Now().UnixNano())
			}
		}()
	}
	pollDone := make(chan struct{})
	go func() { // the poller: notes when each committed row left the local tier
		defer close(pollDone)
		pending := make([]int, 0, 64)
		next := 0
		for left := n; left > 0; {
			for next < n && committed[next].Load() != 0 {
				pending = append(pending, next)
				next++
			}
			kept := pending[:0]
			for _, i := range pending {
				// A Get that finds nothing locally saw the eviction before it
				// started; when it returns (from Redis) does not matter.
				looked := time.Now().UnixNano()
				_, err := local.Get(ctx, strconv.Itoa(i))
				if errors.Is(err, tiered.ErrNotFound) {
					latency[i] = time.Duration(looked - committed[i].Load())
					toDelete[i] = time.Duration(rec.called[i].Load() - committed[i].Load())
					left--
					continue
				}
				kept = append(kept, i)
			}
			pending = kept
			time.Sleep(250 * time.Microsecond)
		}
	}()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < n; i++ {
		// Paced by the clock, not a ticker (which drops ticks when late): a
		// late issuer catches up, so the rate is the target's on average.
		if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		jobs <- i
	}
	close(jobs)
	workers.Wait()
	select {
	case <-pollDone:
	case <-time.After(30 * time.Second):
		b.Fatal("some old values were never evicted")
	}
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(latency)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(latency[n/2]), "p50-ms")
	b.ReportMetric(ms(latency[n*99/100]), "p99-ms")
	b.ReportMetric(ms(latency[n-1]), "max-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "tx/s")
	slices.Sort(toDelete)
	b.ReportMetric(ms(toDelete[n/2]), "to-delete-p50-ms")
	b.ReportMetric(ms(toDelete[n*99/100]), "to-delete-p99-ms")
}

// recordingTarget notes when Delete was first called for each (numeric) id.
type recordingTarget struct {
	*tiered.Keyspace[string]
	called []atomic.Int64 // UnixNano, by id
}

func (r *recordingTarget) Delete(ctx context.Context, ids ...string) error {
	now := time.Now().UnixNano()
	for _, id := range ids {
		if i, err := strconv.Atoi(id); err == nil && i < len(r.called) {
			r.called[i].CompareAndSwap(0, now)
		}
	}
	return r.Keyspace.Delete(ctx, ids...)
}

// BenchmarkThroughput measures how many changed rows per second one Watcher
// turns into invalidations: b.N row changes are committed while no Watcher
// runs (the slot retains them, as after an outage), then a Watcher starts
// and the clock runs until it has confirmed the last of them, every
// invalidation applied to Redis. Sub-benchmarks vary the rows per
// transaction. Run with -benchtime 100000x.
func BenchmarkThroughput(b *testing.B) {
	for _, perTx := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("rows-per-tx=%d", perTx), func(b *testing.B) { benchDrain(b, perTx) })
	}
}

func benchDrain(b *testing.B, perTx int) {
	const rows = 50_000 // distinct rows; b.N changes cycle over them
	dsn := newDB(b)
	db := pool(b, dsn)
	sqlExec(b, db, `CREATE TABLE counters (id int PRIMARY KEY, val text)`)
	sqlExec(b, db, `INSERT INTO counters SELECT g, 'v' FROM generate_series(0, $1 - 1) g`, rows)
	sqlExec(b, db, `CREATE PROCEDURE churn(total int, per_tx int, nrows int) LANGUAGE plpgsql AS $$
		DECLARE done int := 0;
		BEGIN
			WHILE done < total LOOP
				UPDATE counters SET val = done::text
					WHERE id >= done % nrows AND id < done % nrows + least(per_tx, total - done);
				done := done + least(per_tx, total - done);
				COMMIT;
			END LOOP;
		END $$`)
	rs := redistest.Start(b)
	cfg := Config{ConnString: dsn, Rules: []Rule{{Table: "counters", Target: newPeer(b, rs, db).items}}}
	first := startWatcher(b, cfg) // creates the slot
	eventually(b, propagation, "the slot exists", func() bool { return first.Stats().Active })
	first.Close()

	n := b.N
	sqlExec(b, db, `CALL churn($1, $2, $3)`, n, min(perTx, rows), rows)
	var end uint64
	if err := db.QueryRow(ctxT(b), `SELECT (pg_current_wal_lsn() - '0/0')::bigint`).Scan(&end); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	w := startWatcher(b, cfg)
	eventually(b, 5*time.Minute, "the backlog is applied", func() bool { return w.Stats().ConfirmedLSN >= end })
	elapsed := time.Since(start)
	b.StopTimer()
	st := w.Stats()
	if st.Changes < uint64(n) {
		b.Fatalf("the watcher saw %d changes of %d", st.Changes, n)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(st.Calls), "calls")
}
