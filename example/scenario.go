package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/tiered"
)

// config sizes one run of the example.
type config struct {
	Addr      string            // Redis address
	Embedded  bool              // Addr is a fresh embedded miniredis (no leftovers to clear)
	Latency   time.Duration     // one database round trip
	Users     int               // users "1".."Users"
	Products  int               // products, spread over the categories
	Workers   int               // load-phase reader goroutines, half on each replica
	Load      time.Duration     // load-phase length
	WriteEach time.Duration     // load-phase: one user write-through per interval
	Logger    *zap.Logger       // nil: no logging
	Postgres  string            // a PostgreSQL to show change data capture with; "": skip it
	Metrics   string            // serve /metrics on this address while running; "": no
	scrape    func(addr string) // called at the end of the load phase with the metrics address (tests)
}

// result holds the facts the scenario established, for the test to assert.
type result struct {
	Cold, Warm, Peer     string        // tier that answered steps 1-3
	SetSeenAfter         time.Duration // Set on A until B served the new value
	DeleteSeenAfter      time.Duration // Delete on A until B said not found
	NegativeQueries      int64         // DB queries for three reads of a missing user
	GroupSeenAfter       time.Duration // InvalidateGroup on A until B served the new price
	OtherGroupTier       string        // tier that answered a product of another group
	ManyQueries          int64         // DB queries of GetMany of three searches, cold
	ManyPeerQueries      int64         // the same GetMany on the other replica
	StampedeReads        int           // concurrent cold reads of one product
	StampedeQueries      int64         // DB queries they caused
	LoadReads            uint64        // ids read in the load phase
	LoadQueries          int64         // DB queries in the load phase
	LoadWrites           int           // write-throughs in the load phase
	Reads, TotalQueries  uint64        // whole run: ids looked up, DB queries
	Incoherent           int           // written (user, replica) pairs not read back as the DB has them
	InvalidationsApplied uint64        // by both replicas
	Verified             uint64        // user hits the verifier checked
	Inconsistent         uint64        // of them, inconsistent

	latency [numTiers]hist // load-phase Gets by the tier that answered
}

// tierOf compares a keyspace's Stats before and after one read, to say in
// plain words which tier answered it.
func tierOf(before, after tiered.Stats) string {
	switch {
	case after.Loads > before.Loads:
		return "DB load"
	case after.NegativeHits > before.NegativeHits:
		return "local negative hit"
	case after.RedisHits > before.RedisHits:
		return "Redis hit"
	case after.LocalHits > before.LocalHits:
		return "local hit"
	}
	return "nothing"
}

// run starts two replicas against cfg.Addr, plays the scripted scenario and
// the load phase, prints what happened to w and returns the facts. It fails
// when Redis cannot be reached or when the cache does not do what a step
// says it does.
func run(ctx context.Context, cfg config, w io.Writer) (*result, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if err := ping(ctx, cfg.Addr); err != nil {
		return nil, err
	}
	db := newDB(cfg.Latency, cfg.Users, cfg.Products)
	var m *metrics
	if cfg.Metrics != "" {
		var err error
		if m, err = startMetrics(cfg.Metrics); err != nil {
			return nil, err
		}
		defer m.close()
		fmt.Fprintf(w, "-- metrics: http://%s/metrics (Prometheus text format) while the example runs\n", m.addr)
	}
	a, err := newReplica("A", cfg.Addr, db, cfg.Logger, m)
	if err != nil {
		return nil, err
	}
	defer a.close()
	b, err := newReplica("B", cfg.Addr, db, cfg.Logger, m)
	if err != nil {
		return nil, err
	}
	defer b.close()
	if !cfg.Embedded {
		if err := clearLeftovers(ctx, a); err != nil {
			return nil, err
		}
	}
	// Nothing is served from a local tier before its bus has subscribed
	// (invalidations published earlier would be lost on it).
	if _, err := pollUntil(ctx, 5*time.Second, func() (bool, error) { return a.c.Ready() && b.c.Ready(), nil }); err != nil {
		return nil, fmt.Errorf("invalidation bus did not subscribe: %w", err)
	}

	res := &result{}
	p := &printer{w: w}
	steps := []func(context.Context, *printer, *DB, *replica, *replica, *result) error{
		stepReads, stepSet, stepDelete, stepNegative, stepGroup, stepGetMany, stepStampede,
	}
	for _, step := range steps {
		if err := step(ctx, p, db, a, b, res); err != nil {
			return res, err
		}
	}
	if cfg.Postgres != "" {
		p.printf("-- invalidation from the database: PostgreSQL logical replication (invalidation/pgcdc)\n")
		if err := stepCDC(ctx, p, cfg.Postgres, a, b); err != nil {
			return res, err
		}
	}
	if err := loadPhase(ctx, p, cfg, db, a, b, res); err != nil {
		return res, err
	}
	if cfg.scrape != nil && m != nil {
		cfg.scrape(m.addr)
	}
	report(p, db, a, b, res)
	if !cfg.Embedded {
		n, err := cleanup(ctx, cfg.Addr)
		if err != nil {
			return res, err
		}
		p.printf("-- removed the %d keys this run left in Redis (%s*)\n", n, namespace)
	}
	return res, p.err
}

// cleanup deletes every key of the example's namespace: values, leases,
// group versions and epochs. It scans, which a service never needs to: the
// library itself never enumerates keys.
func cleanup(ctx context.Context, addr string) (int, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	n := 0
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
			return fmt.Errorf("cleaning up: %w", err)
		}
		n, batch = n+len(batch), batch[:0]
		return nil
	}
	for _, pattern := range []string{namespace + "*", "{" + namespace + "*"} {
		iter := rdb.Scan(ctx, 0, pattern, 500).Iterator()
		for iter.Next(ctx) {
			if batch = append(batch, iter.Val()); len(batch) == 500 {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return n, fmt.Errorf("cleaning up: %w", err)
		}
		if err := flush(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// ping fails fast, before any Client starts, when Redis is not there: a
// tiercache Client would start anyway and serve from the loaders, which is
// right for a service but not for a demo of the cache.
func ping(ctx context.Context, addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, MaxRetries: -1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s is unreachable: %w", addr, err)
	}
	return nil
}

// clearLeftovers makes whatever an interrupted earlier run left in a real
// Redis unreachable, with one library call per keyspace: InvalidateAll.
func clearLeftovers(ctx context.Context, r *replica) error {
	for _, err := range []error{r.users.InvalidateAll(ctx), r.products.InvalidateAll(ctx), r.search.InvalidateAll(ctx)} {
		if err != nil {
			return fmt.Errorf("clearing earlier runs: %w", err)
		}
	}
	return nil
}

const missingUser = "999999"

var scenarioQueries = []string{"  Red LAMP ", "golden drum", "wooden train"}

// timed runs f and returns how long it took and which tier of ks answered.
func timed[V any](ks *tiered.Keyspace[V], f func() error) (time.Duration, string, error) {
	before := ks.Stats()
	start := time.Now()
	err := f()
	took := time.Since(start)
	return took, tierOf(before, ks.Stats()), err
}

func stepReads(ctx context.Context, p *printer, _ *DB, a, b *replica, res *result) error {
	p.section("reads: local tier, then Redis, then the database")
	var u User
	get := func(r *replica) func() error {
		return func() (err error) { u, err = r.users.Get(ctx, "42"); return err }
	}
	took, tier, err := timed(a.users, get(a))
	if err != nil {
		return fmt.Errorf("cold read: %w", err)
	}
	res.Cold = tier
	p.line("1. user 42 on A, cold       -> %-10s %8s  %q", tier, dur(took), u.Name)
	took, res.Warm, err = timed(a.users, get(a))
	if err != nil {
		return fmt.Errorf("warm read: %w", err)
	}
	p.line("2. user 42 on A, again      -> %-10s %8s  (decoded value, no I/O)", res.Warm, dur(took))
	took, res.Peer, err = timed(b.users, get(b))
	if err != nil {
		return fmt.Errorf("read on B: %w", err)
	}
	p.line("3. user 42 on B             -> %-10s %8s  (filled by A)", res.Peer, dur(took))
	if res.Cold != "DB load" || res.Warm != "local hit" || res.Peer != "Redis hit" {
		return fmt.Errorf("reads: want DB load, local hit, Redis hit; got %s, %s, %s", res.Cold, res.Warm, res.Peer)
	}
	return nil
}

func stepSet(ctx context.Context, p *printer, db *DB, a, b *replica, res *result) error {
	p.section("writes: write-through Set and Delete, seen by the other replica")
	u, _ := db.UserNow("42")
	u.Email = "ada@new.example"
	db.PutUser(u)
	start := time.Now()
	if err := a.users.Set(ctx, "42", u); err != nil {
		return err
	}
	took := time.Since(start)
	seen, err := pollUntil(ctx, 2*time.Second, func() (bool, error) {
		v, err := b.users.Get(ctx, "42")
		return v.Email == u.Email, err
	})
	if err != nil {
		return fmt.Errorf("set on A never reached B: %w", err)
	}
	res.SetSeenAfter = seen
	p.line("4. Set user 42 on A (%s); B served the new email %s later", dur(took), dur(seen))
	p.line("   (Pub/Sub evicted B's local copy; B re-read Redis, not the DB)")
	return nil
}

func stepDelete(ctx context.Context, p *printer, db *DB, a, b *replica, res *result) error {
	for _, r := range []*replica{a, b} {
		if _, err := r.users.Get(ctx, "7"); err != nil {
			return err
		}
	}
	db.DeleteUser("7")
	if err := a.users.Delete(ctx, "7"); err != nil {
		return err
	}
	seen, err := pollUntil(ctx, 2*time.Second, func() (bool, error) {
		_, err := b.users.Get(ctx, "7")
		if errors.Is(err, tiered.ErrNotFound) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("delete on A never reached B: %w", err)
	}
	res.DeleteSeenAfter = seen
	p.line("5. Delete user 7 on A; B answered ErrNotFound %s later (incl. its DB lookup)", dur(seen))
	return nil
}

func stepNegative(ctx context.Context, p *printer, db *DB, a, b *replica, res *result) error {
	p.section("negative caching: a missing id costs one query")
	q0 := db.Queries()
	var parts []string
	for _, r := range []*replica{a, a, b} {
		r := r
		took, tier, err := timed(r.users, func() error { _, err := r.users.Get(ctx, missingUser); return err })
		if !errors.Is(err, tiered.ErrNotFound) {
			return fmt.Errorf("missing user on %s: want ErrNotFound, got %v", r.name, err)
		}
		if tier == "Redis hit" {
			tier = "Redis negative hit"
		}
		parts = append(parts, fmt.Sprintf("%s: %s %s", r.name, tier, dur(took)))
	}
	res.NegativeQueries = db.Queries() - q0
	p.line("6. user %s x3: %s, %s, %s", missingUser, parts[0], parts[1], parts[2])
	p.line("   -> %d DB query; \"not found\" is cached for the NegativeTTL (30s)", res.NegativeQueries)
	if res.NegativeQueries != 1 {
		return fmt.Errorf("negative caching: %d DB queries for 3 reads of a missing user, want 1", res.NegativeQueries)
	}
	return nil
}

func stepGroup(ctx context.Context, p *printer, db *DB, a, b *replica, res *result) error {
	p.section("version groups: one call invalidates a whole category")
	ids := []string{"books-1", "books-2", "toys-1"}
	for _, r := range []*replica{a, b} {
		for _, id := range ids {
			if _, err := r.products.Get(ctx, id); err != nil {
				return err
			}
		}
	}
	old := db.ProductNow("books-1").PriceCents
	db.RaisePrices("books", 10)
	want := db.ProductNow("books-1").PriceCents
	if err := a.products.InvalidateGroup(ctx, "books"); err != nil {
		return err
	}
	seen, err := pollUntil(ctx, 2*time.Second, func() (bool, error) {
		v, err := b.products.Get(ctx, "books-1")
		return v.PriceCents == want, err
	})
	if err != nil {
		return fmt.Errorf("InvalidateGroup on A never reached B: %w", err)
	}
	res.GroupSeenAfter = seen
	_, res.OtherGroupTier, err = timed(b.products, func() error { _, err := b.products.Get(ctx, "toys-1"); return err })
	if err != nil {
		return err
	}
	p.line("7. books +10%% in the DB, InvalidateGroup(\"books\") on A: B served books-1 at %s", cents(want))
	p.line("   (was %s) %s later, incl. one DB reload; toys-1 on B is still a %s", cents(old), dur(seen), res.OtherGroupTier)
	if res.OtherGroupTier != "local hit" {
		return fmt.Errorf("InvalidateGroup(books) also dropped toys-1 on B (%s)", res.OtherGroupTier)
	}
	return nil
}

func stepGetMany(ctx context.Context, p *printer, db *DB, a, b *replica, res *result) error {
	p.section("batch reads: GetMany with a BatchLoader, ids hashed with keys.Hash")
	sctx, ids := withQueries(ctx, scenarioQueries...)
	var found map[string]SearchResult
	for i, r := range []*replica{a, b} {
		r := r
		q0 := db.Queries()
		took, tier, err := timed(r.search, func() (err error) { found, err = r.search.GetMany(sctx, ids); return err })
		if err != nil {
			return fmt.Errorf("GetMany on %s: %w", r.name, err)
		}
		n := db.Queries() - q0
		if i == 0 {
			res.ManyQueries = n
		} else {
			res.ManyPeerQueries = n
		}
		p.line("%d. %d searches on %s -> %-9s %8s, %d DB quer%s", 8+i, len(ids), r.name, tier, dur(took), n, plural(n, "y", "ies"))
	}
	hits := found[ids[0]]
	p.line("   search:%s = %q -> %v", ids[0], hits.Query, hits.ProductIDs)
	if res.ManyQueries != 1 || res.ManyPeerQueries != 0 || len(found) != len(ids) {
		return fmt.Errorf("GetMany: %d and %d DB queries, %d results; want 1, 0, %d", res.ManyQueries, res.ManyPeerQueries, len(found), len(ids))
	}
	return nil
}

func stepStampede(ctx context.Context, p *printer, db *DB, a, b *replica, res *result) error {
	p.section("stampede: concurrent cold reads on both replicas")
	const perReplica = 50
	start := make(chan struct{})
	errs := make(chan error, 2*perReplica)
	var wg sync.WaitGroup
	for _, r := range []*replica{a, b} {
		for i := 0; i < perReplica; i++ {
			r := r
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := r.products.Get(ctx, "games-7")
				errs <- err
			}()
		}
	}
	q0 := db.Queries()
	t0 := time.Now()
	close(start)
	wg.Wait()
	took := time.Since(t0)
	close(errs)
	for err := range errs {
		if err != nil {
			return fmt.Errorf("stampede: %w", err)
		}
	}
	res.StampedeReads, res.StampedeQueries = 2*perReplica, db.Queries()-q0
	p.line("10. %d Gets of games-7 at once -> %d DB query in %s (singleflight per replica, lease in Redis)",
		res.StampedeReads, res.StampedeQueries, dur(took))
	if res.StampedeQueries != 1 {
		return fmt.Errorf("stampede: %d DB queries for one cold id, want 1", res.StampedeQueries)
	}
	return nil
}

// pollUntil calls f until it reports true, and returns how long that took.
func pollUntil(ctx context.Context, limit time.Duration, f func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(limit)
	for {
		ok, err := f()
		if err != nil {
			return 0, err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("not true after %s", limit)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		time.Sleep(50 * time.Microsecond)
	}
}
