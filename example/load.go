package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"time"

	"github.com/tiercache/tiercache/tiered"
)

// loadQueries are the searches of the load phase: adjective + noun pairs.
var loadQueries = func() []string {
	var qs []string
	for _, a := range adjectives {
		for _, n := range nouns[:3] {
			qs = append(qs, a+" "+n)
		}
	}
	return qs
}()

// Tiers of the latency histograms.
const (
	tierLocal = iota
	tierRedis
	tierDB
	numTiers
)

var tierNames = [numTiers]string{"local hit", "Redis hit", "DB load"}

// Each reader serves "requests" of readsPerRequest cache reads followed by
// requestWork of other work.
const (
	readsPerRequest = 20
	requestWork     = time.Millisecond
)

// worker is one reader goroutine of the load phase and what it measured.
type worker struct {
	r     *replica
	rng   *rand.Rand
	lat   [numTiers]hist
	reads uint64
	errs  int
	err   error
}

// loadPhase runs cfg.Workers readers, half on each replica, for cfg.Load:
// Zipf-skewed ids (a few hot, a long tail, 2% of user ids missing) and a
// writer that updates a user through the cache every cfg.WriteEach. Then it
// checks that every written user reads back, on both replicas, as the
// database has it.
func loadPhase(ctx context.Context, p *printer, cfg config, db *DB, a, b *replica, res *result) error {
	p.section(fmt.Sprintf("load: %d readers on A and B for %s (%d Zipf-skewed reads, then %s of other work), a Set every %s",
		cfg.Workers, cfg.Load, readsPerRequest, requestWork, cfg.WriteEach))
	q0 := db.Queries()
	deadline := time.Now().Add(cfg.Load)
	ws := make([]*worker, cfg.Workers)
	var wg sync.WaitGroup
	for i := range ws {
		w := &worker{r: []*replica{a, b}[i%2], rng: rand.New(rand.NewSource(int64(i) + 1))}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(ctx, cfg, deadline)
		}()
	}
	written, writes, writeErr := writeUsers(ctx, cfg, db, a, b, deadline)
	wg.Wait()

	var all [numTiers]hist
	for _, w := range ws {
		res.LoadReads += w.reads
		for t := range all {
			all[t].merge(&w.lat[t])
		}
		if w.err != nil {
			return fmt.Errorf("load phase: %d failed reads, first: %w", w.errs, w.err)
		}
	}
	if writeErr != nil {
		return fmt.Errorf("load phase: write-through: %w", writeErr)
	}
	res.LoadQueries = db.Queries() - q0
	res.LoadWrites = writes
	res.Incoherent = checkCoherent(ctx, db, written, a, b)
	res.latency = all
	p.line("%s ids read (%s/s), %d writes; %s DB queries",
		commas(res.LoadReads), commas(uint64(float64(res.LoadReads)/cfg.Load.Seconds())), res.LoadWrites, commas(uint64(res.LoadQueries)))
	p.line("the %d users written read back as the DB has them, on A and on B: %d of %d reads",
		len(written), 2*len(written)-res.Incoherent, 2*len(written))
	if res.Incoherent > 0 {
		return fmt.Errorf("load phase: %d written users not coherent across replicas", res.Incoherent)
	}
	return nil
}

func (w *worker) run(ctx context.Context, cfg config, deadline time.Time) {
	users := rand.NewZipf(w.rng, 1.2, 1, uint64(cfg.Users-1))
	products := rand.NewZipf(w.rng, 1.2, 1, uint64(cfg.Products-1))
	searches := rand.NewZipf(w.rng, 1.2, 1, uint64(len(loadQueries)-1))
	pr := &probe{}
	pctx := withProbe(ctx, pr)
	for n := 1; time.Now().Before(deadline); n++ {
		if n%readsPerRequest == 0 {
			// The rest of the request's work: readers that never pause
			// would saturate the CPUs and time the scheduler, not Redis.
			time.Sleep(requestWork)
		}
		pr.redis.Store(false)
		pr.db.Store(false)
		var err error
		var start time.Time
		switch x := w.rng.Intn(100); {
		case x < 65:
			id := strconv.Itoa(int(users.Uint64()) + 1)
			if w.rng.Intn(50) == 0 {
				id = strconv.Itoa(cfg.Users + 1 + w.rng.Intn(50)) // no such user
			}
			start = time.Now()
			_, err = w.r.users.Get(pctx, id)
		case x < 95:
			id := productID(int(products.Uint64()))
			start = time.Now()
			_, err = w.r.products.Get(pctx, id)
		default:
			// A page showing three searches: one GetMany, not timed per tier.
			qs := make([]string, 3)
			for i := range qs {
				qs[i] = loadQueries[searches.Uint64()]
			}
			sctx, ids := withQueries(pctx, qs...)
			_, err = w.r.search.GetMany(sctx, ids)
			w.reads += uint64(len(ids))
			w.check(err)
			continue
		}
		took := time.Since(start)
		w.reads++
		switch {
		case pr.db.Load():
			w.lat[tierDB].add(took)
		case pr.redis.Load():
			w.lat[tierRedis].add(took)
		default:
			w.lat[tierLocal].add(took)
		}
		w.check(err)
	}
}

func (w *worker) check(err error) {
	if err != nil && !errors.Is(err, tiered.ErrNotFound) {
		w.errs++
		if w.err == nil {
			w.err = err
		}
	}
}

// writeUsers renames a Zipf-chosen user every cfg.WriteEach until deadline:
// the database first, then Set through alternating replicas. It returns the
// ids written and the number of writes.
func writeUsers(ctx context.Context, cfg config, db *DB, a, b *replica, deadline time.Time) (written map[string]bool, writes int, err error) {
	rng := rand.New(rand.NewSource(99))
	users := rand.NewZipf(rng, 1.2, 1, uint64(cfg.Users-1))
	written = make(map[string]bool)
	tick := time.NewTicker(cfg.WriteEach)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return written, writes, ctx.Err()
		case now := <-tick.C:
			if now.After(deadline) {
				return written, writes, nil
			}
		}
		id := strconv.Itoa(int(users.Uint64()) + 1)
		u, ok := db.UserNow(id)
		if !ok {
			continue // deleted in the scenario
		}
		u.Name = fmt.Sprintf("%s (edit %d)", u.Name, n)
		db.PutUser(u)
		if err := []*replica{a, b}[n%2].users.Set(ctx, id, u); err != nil {
			return written, writes, err
		}
		written[id] = true
		writes++
	}
}

// checkCoherent returns how many (user, replica) pairs of the written users
// do not read back as the database has them, after giving invalidations a second to arrive.
func checkCoherent(ctx context.Context, db *DB, written map[string]bool, replicas ...*replica) int {
	bad := 0
	deadline := time.Now().Add(time.Second)
	for id := range written {
		want, _ := db.UserNow(id)
		for _, r := range replicas {
			_, err := pollUntil(ctx, max(time.Until(deadline), 0), func() (bool, error) {
				got, err := r.users.Get(ctx, id)
				return got == want, err
			})
			if err != nil {
				bad++
			}
		}
	}
	return bad
}
