package pgcdc

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Watcher tails a logical replication slot and turns committed row changes
// into invalidations of the rules' targets. Create it with Start; Close it
// on shutdown. Its methods are safe for concurrent use.
type Watcher struct {
	cfg     Config
	repl    *pgconn.Config        // the replication connection's config
	rules   map[string]*boundRule // by schema-qualified table name
	targets []target
	limits  []int // per target: Config.MaxPendingIDs, or 0 for a target that cannot invalidate all

	log  *zap.Logger // takeovers, Start's warnings
	warn *zap.Logger // the same, sampled: at most one per message per second

	led *ledger
	st  counters

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	close  sync.Once
}

// boundRule is a Rule resolved against the catalog.
type boundRule struct {
	target int // index into Watcher.targets
	ids    func(Change) []string
	groups func(Change) []string
}

// target is one distinct Rule.Target.
type target struct {
	inv  Invalidator
	all  AllInvalidator // nil: TRUNCATE cannot be propagated
	name string         // for logs: the keyspace name, or the first table
}

// Start checks cfg against the database (wal_level, the role's replication
// right, the rules' tables and their replica identity), creates the
// publication and the slot when missing, and returns a Watcher that runs in
// the background until Close: active while it holds the slot, standby while
// another consumer does. It does not wait for the slot. Errors say what to
// fix.
func Start(ctx context.Context, cfg Config) (*Watcher, error) {
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	w := &Watcher{cfg: cfg, rules: make(map[string]*boundRule), led: newLedger()}
	w.log = cfg.Logger.Named("pgcdc")
	w.warn = w.log.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(core, time.Second, 1, 0)
	}))
	if err := w.prepare(ctx); err != nil {
		return nil, err
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.wg.Add(2)
	go w.runStream()
	go w.runApplier()
	return w, nil
}

// prepare does Start's checks and setup on an ordinary connection, then
// proves a replication connection can be made.
func (w *Watcher) prepare(ctx context.Context) error {
	normal, err := pgx.ParseConfig(w.cfg.ConnString)
	if err != nil {
		return fmt.Errorf("%w: ConnString: %v", ErrConfig, err)
	}
	delete(normal.RuntimeParams, "replication")
	if w.repl, err = replicationConfig(w.cfg); err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, normal)
	if err != nil {
		return fmt.Errorf("pgcdc: connect to %s: %w", normal.Host, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	srv, err := readServer(ctx, conn)
	if err != nil {
		return err
	}
	if err := srv.check(); err != nil {
		return err
	}
	tables, err := w.bindRules(ctx, conn)
	if err != nil {
		return err
	}
	if err := publish(ctx, conn, w.cfg.Publication, tables); err != nil {
		return err
	}
	if err := ensureSlot(ctx, conn, w.cfg.Slot, srv.database); err != nil {
		return err
	}
	return tryReplication(ctx, w.repl)
}

// replicationConfig is cfg.ConnString for a logical replication connection.
func replicationConfig(cfg Config) (*pgconn.Config, error) {
	repl, err := pgconn.ParseConfig(cfg.ConnString)
	if err != nil {
		return nil, fmt.Errorf("%w: ConnString: %v", ErrConfig, err)
	}
	repl.RuntimeParams["replication"] = "database"
	if repl.RuntimeParams["application_name"] == "" {
		repl.RuntimeParams["application_name"] = "tiercache-pgcdc"
	}
	// The server ends a consumer it has not heard from for this long, which
	// frees the slot for a standby (settable per connection since 12).
	repl.RuntimeParams["wal_sender_timeout"] = fmt.Sprint(cfg.ServerTimeout.Milliseconds())
	gatherReads(repl)
	return repl, nil
}

// tryReplication opens and closes one replication connection, so that
// pg_hba.conf and max_wal_senders problems surface in Start.
func tryReplication(ctx context.Context, cfg *pgconn.Config) error {
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		if isCode(err, codeInsufficientPriv) {
			return fmt.Errorf("pgcdc: open a replication connection: %w (the role needs REPLICATION, and pg_hba.conf must admit it to the database)", err)
		}
		return fmt.Errorf("pgcdc: open a replication connection: %w (check pg_hba.conf and that max_wal_senders leaves room for every replica)", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := pglogrepl.IdentifySystem(ctx, conn); err != nil {
		return fmt.Errorf("pgcdc: IDENTIFY_SYSTEM on the replication connection: %w", err)
	}
	return nil
}

// bindRules resolves every rule's table, numbers the distinct targets and
// warns about replica identities that do not send what a rule reads.
func (w *Watcher) bindRules(ctx context.Context, conn *pgx.Conn) ([]table, error) {
	var tables []table
	for i, r := range w.cfg.Rules {
		t, err := readTable(ctx, conn, r.Table)
		if err != nil {
			return nil, fmt.Errorf("%w (rule %d)", err, i)
		}
		if w.rules[t.name] != nil {
			return nil, fmt.Errorf("%w: two rules name table %s (rule %d, %q)", ErrConfig, t.name, i, r.Table)
		}
		ids := r.IDs
		if ids == nil {
			if len(t.key) == 0 {
				return nil, fmt.Errorf("pgcdc: table %s has no primary key: set Rule.IDs (rule %d)", t.name, i)
			}
			ids = primaryKeyIDs(t.key)
		}
		br := &boundRule{target: w.targetOf(r.Target, t.name), ids: ids, groups: r.Groups}
		w.rules[t.name] = br
		tables = append(tables, t)
		w.warnIdentity(t, r)
	}
	return tables, nil
}

// targetOf returns the number of inv among the distinct targets, adding it.
// Rules that share a target share its Delete calls.
func (w *Watcher) targetOf(inv Invalidator, table string) int {
	if reflect.TypeOf(inv).Comparable() {
		for i, t := range w.targets {
			if t.inv == inv { // false, not a panic, for values of different types
				return i
			}
		}
	}
	t := target{inv: inv, name: table}
	if n, ok := inv.(interface{ Name() string }); ok {
		t.name = n.Name()
	}
	t.all, _ = inv.(AllInvalidator)
	limit := w.cfg.MaxPendingIDs
	if t.all == nil {
		limit = 0 // without InvalidateAll there is nothing to fall back on: hold every id
		w.log.Warn("pgcdc: target has no InvalidateAll method: a TRUNCATE of its table cannot be propagated",
			zap.String("target", t.name), zap.String("table", table))
	}
	w.targets = append(w.targets, t)
	w.limits = append(w.limits, limit)
	return len(w.targets) - 1
}

// Close stops the Watcher: it reports the position it has applied, ends its
// replication connection (releasing the slot for a standby) and stops its
// goroutines, abandoning invalidations still being retried: they were not
// confirmed, so whoever holds the slot next applies them. It returns within
// about a second and is idempotent.
func (w *Watcher) Close() error {
	w.close.Do(func() {
		w.cancel()
		w.wg.Wait()
	})
	return nil
}

// Stats returns the Watcher's counters since Start.
func (w *Watcher) Stats() Stats { return w.st.snapshot() }

// Stats are a Watcher's counters since Start.
type Stats struct {
	Active        bool   // this Watcher holds the slot now
	Standby       bool   // another consumer held the slot at this Watcher's last try; it tries again every StandbyRetry
	Changes       uint64 // row changes (and truncated tables) received for tables a rule names
	Ignored       uint64 // row changes received for tables no rule names
	Transactions  uint64 // committed transactions whose invalidations were applied
	Invalidations uint64 // ids deleted, groups bumped and keyspaces invalidated, by calls that returned nil
	Calls         uint64 // Invalidator calls that returned nil
	Retries       uint64 // rounds of retrying invalidations that failed
	Skipped       uint64 // ids and groups skipped as not valid tiercache keys (nothing can be cached under them)
	ConfirmedLSN  uint64 // the last position confirmed to PostgreSQL (flush position of the standby status update)
	ServerLSN     uint64 // the server's WAL end, as last reported on the replication connection
	LagBytes      uint64 // ServerLSN - ConfirmedLSN: WAL written that this Watcher has not confirmed yet
	Takeovers     uint64 // times this Watcher took the slot after waiting as a standby
	Resyncs       uint64 // times the slot had vanished and was re-created, every target invalidated whole
	Errors        uint64 // failed Invalidator calls, rule functions that panicked, replication connection failures
}

type counters struct {
	active, standby                               atomic.Bool
	changes, ignored, transactions, invalidations atomic.Uint64
	calls, retries, skipped                       atomic.Uint64
	confirmed, serverLSN, takeovers, resyncs      atomic.Uint64
	errors                                        atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Active:        c.active.Load(),
		Standby:       c.standby.Load(),
		Changes:       c.changes.Load(),
		Ignored:       c.ignored.Load(),
		Transactions:  c.transactions.Load(),
		Invalidations: c.invalidations.Load(),
		Calls:         c.calls.Load(),
		Retries:       c.retries.Load(),
		Skipped:       c.skipped.Load(),
		ConfirmedLSN:  c.confirmed.Load(),
		ServerLSN:     c.serverLSN.Load(),
		Takeovers:     c.takeovers.Load(),
		Resyncs:       c.resyncs.Load(),
		Errors:        c.errors.Load(),
	}
	if s.ServerLSN > s.ConfirmedLSN {
		s.LagBytes = s.ServerLSN - s.ConfirmedLSN
	}
	return s
}

// raiseMax stores v in a if it is larger.
func raiseMax(a *atomic.Uint64, v uint64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}
