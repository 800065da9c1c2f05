package pgcdc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tiercache/tiercache/internal/pgtest"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/tiered"
)

// pg is the PostgreSQL server of the package's tests; each test gets a
// database of its own on it (newDB).
var pg *pgtest.Server

// Environment variables the Example functions read (with fallbacks for
// copying them into a program); TestMain points them at its servers.
const (
	envPostgres = "TIERCACHE_PGCDC_EXAMPLE_POSTGRES"
	envRedis    = "TIERCACHE_PGCDC_EXAMPLE_REDIS"
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	if os.Getenv(helperEnv) != "" || flag.Lookup("test.fuzzworker").Value.String() == "true" {
		return m.Run() // a child process, or a fuzzing worker: no servers needed
	}
	var err error
	if pg, err = pgtest.StartE(pgtest.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rs, err := redistest.StartE(redistest.Options{})
	if err != nil {
		_ = pg.Close()
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv(envPostgres, pg.ConnString("postgres"))
	os.Setenv(envRedis, rs.Addr)
	code := m.Run()
	_ = rs.Close()
	_ = pg.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

// A Keyspace is an Invalidator, and can invalidate all (for TRUNCATE).
var (
	_ Invalidator    = (*tiered.Keyspace[string])(nil)
	_ AllInvalidator = (*tiered.Keyspace[string])(nil)
)

var dbSeq atomic.Int64

// newDB creates a database of its own for the test and returns its
// connection string. Its replication slots are dropped when the test ends
// (after the test's Watchers closed: cleanups run last-registered first), so
// that none keeps retaining WAL for the rest of the package.
func newDB(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	pg.Psql(t, "", "CREATE DATABASE "+name)
	t.Cleanup(func() {
		// A closed Watcher's walsender may take a moment to exit and free
		// its slot; slot names are per server, so a slot left behind would
		// collide with the next test's.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			left, err := pg.PsqlE("", fmt.Sprintf(`SELECT count(pg_drop_replication_slot(slot_name)) FILTER (WHERE NOT active), count(*) FILTER (WHERE active)
				FROM pg_replication_slots WHERE database = '%s'`, name))
			if err == nil && strings.HasSuffix(left, "|0") {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("the slots of database %s are still active 10s after the test", name)
	})
	return pg.ConnString(name)
}

// pool returns a connection pool for dsn, closed when the test ends.
func pool(t testing.TB, dsn string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func sqlExec(t testing.TB, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(ctxT(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// itemsSchema is the table most tests cache: items(id, val).
const itemsSchema = `CREATE TABLE items (id text PRIMARY KEY, val text NOT NULL)`

// itemLoader reads items from db: the Loader of the "item" keyspace.
func itemLoader(db *pgxpool.Pool) func(context.Context, string) (string, error) {
	return func(ctx context.Context, id string) (string, error) {
		var v string
		err := db.QueryRow(ctx, `SELECT val FROM items WHERE id = $1`, id).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return "", tiered.ErrNotFound
		}
		return v, err
	}
}

// peer is one process's view of the cache: a tiered Client with the
// "item" keyspace over items, as a replica of a service would have.
type peer struct {
	rdb    *redis.Client
	client *tiered.Client
	items  *tiered.Keyspace[string]
}

// itemConfig caches items for an hour in both tiers: only invalidations can
// make a change visible within a test.
func itemConfig(db *pgxpool.Pool) tiered.Config[string] {
	return tiered.Config[string]{
		Name: "item", TTL: time.Hour, LocalTTL: time.Hour, NegativeTTL: time.Hour,
		Loader: itemLoader(db),
	}
}

func newPeer(t testing.TB, rs *redistest.Server, db *pgxpool.Pool, hooks ...redis.Hook) *peer {
	t.Helper()
	rdb := redis.NewClient(rs.RedisOptions())
	for _, h := range hooks {
		rdb.AddHook(h)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	c, err := tiered.NewClient(tiered.Options{Redis: rdb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	k, err := tiered.NewKeyspace(c, itemConfig(db))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the peer's bus is subscribed", c.Ready)
	return &peer{rdb: rdb, client: c, items: k}
}

// get returns the peer's value of id, "" for not found.
func (p *peer) get(t testing.TB, id string) string {
	t.Helper()
	v, err := p.items.Get(ctxT(t), id)
	if errors.Is(err, tiered.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return v
}

// startWatcher starts a Watcher with short test timings, closed when the
// test ends.
func startWatcher(t testing.TB, cfg Config) *Watcher {
	t.Helper()
	if cfg.StandbyRetry == 0 {
		cfg.StandbyRetry = 200 * time.Millisecond
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = 200 * time.Millisecond
	}
	w, err := Start(ctxT(t), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// activeWatcher is startWatcher, returning once the Watcher holds the slot.
func activeWatcher(t testing.TB, cfg Config) *Watcher {
	t.Helper()
	w := startWatcher(t, cfg)
	eventually(t, propagation, "the watcher holds the slot", func() bool { return w.Stats().Active })
	return w
}

// slotLSNs returns the slot's confirmed_flush_lsn and the bytes of WAL
// between the server's current position and the slot's restart_lsn (what
// the slot retains) and confirmed_flush_lsn.
func slotLSNs(t testing.TB, db *pgxpool.Pool, slot string) (confirmed string, retained, unconfirmed int64) {
	t.Helper()
	err := db.QueryRow(ctxT(t), `SELECT confirmed_flush_lsn::text,
		pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
		pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&confirmed, &retained, &unconfirmed)
	if err != nil {
		t.Fatalf("read slot %s: %v", slot, err)
	}
	return confirmed, retained, unconfirmed
}

// roundTrips is a go-redis hook that counts round trips and the commands in
// them.
type roundTrips struct {
	mu    sync.Mutex
	trips int
	cmds  int
	on    bool
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(1, cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(len(cmds), cmds[0].Name())
		return next(ctx, cmds)
	}
}

// count records a round trip of n commands, except the bus's pings and
// connection setup.
func (h *roundTrips) count(n int, first string) {
	switch strings.ToLower(first) {
	case "ping", "hello", "client", "subscribe":
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.on {
		h.trips++
		h.cmds += n
	}
}

func (h *roundTrips) start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on, h.trips, h.cmds = true, 0, 0
}

func (h *roundTrips) stop() (trips, cmds int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.on = false
	return h.trips, h.cmds
}
