package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/tiered"
)

// The example keeps to a namespace of its own in the Redis it is given:
// every keyspace name starts with namespace, so every key it writes starts
// with it (or with "{" + namespace for the metadata keys), and its
// invalidations travel on a channel of its own. The keys go at the end of
// the run (cleanup).
const (
	namespace      = "tiercache-example-"
	exampleChannel = "tiercache-example:invalidate"
)

// replica is one instance of the service: its own go-redis client, its own
// tiercache Client (and so its own local tier and bus subscription) and the
// three keyspaces. Two replicas in one process behave like two pods.
type replica struct {
	name     string
	rdb      *redis.Client
	c        *tiered.Client
	users    *tiered.Keyspace[User]
	products *tiered.Keyspace[Product]
	search   *tiered.Keyspace[SearchResult]
}

func newReplica(name, addr string, db *DB, log *zap.Logger, m *metrics) (*replica, error) {
	obs, err := m.observer(name)
	if err != nil {
		return nil, err
	}
	// ContextTimeoutEnabled: go-redis bounds each call by its context
	// itself, the fastest path (see the README's Quickstart).
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second, ContextTimeoutEnabled: true})
	rdb.AddHook(probeHook{})
	c, err := tiered.NewClient(tiered.Options{Redis: rdb, Logger: log.Named(name), Channel: exampleChannel, Observer: obs})
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("replica %s: %w", name, err)
	}
	if err := m.register(name, c); err != nil {
		c.Close()
		rdb.Close()
		return nil, fmt.Errorf("replica %s: %w", name, err)
	}
	r := &replica{name: name, rdb: rdb, c: c}
	if err := r.keyspaces(db); err != nil {
		r.close()
		return nil, fmt.Errorf("replica %s: %w", name, err)
	}
	return r, nil
}

func (r *replica) keyspaces(db *DB) (err error) {
	// Users: a Loader, "not found" remembered for 30s so a flood of requests
	// for a missing id costs one query, and a TTL with jitter so users loaded
	// together do not expire together.
	r.users, err = tiered.NewKeyspace(r.c, tiered.Config[User]{
		Name:        namespace + "user",
		TTL:         10 * time.Minute,
		TTLJitter:   time.Minute,
		LocalTTL:    30 * time.Second,
		NegativeTTL: 30 * time.Second,
		Loader:      probedLoader(db.User),
		// Consistency measured as the service runs: one hit in a hundred
		// is checked against the database 200ms later.
		VerifyRate: 0.01, VerifyDelay: 200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	// Products: one version group per category, so a category-wide price
	// change is one InvalidateGroup call, not one Delete per product.
	r.products, err = tiered.NewKeyspace(r.c, tiered.Config[Product]{
		Name:     namespace + "product",
		TTL:      time.Hour,
		LocalTTL: time.Minute,
		Group:    productCategory,
		Loader:   probedLoader(db.Product),
	})
	if err != nil {
		return err
	}
	// Search: ids are hashes of unbounded user input (keys.Hash), the query
	// text travels in the context; GetMany loads all misses in one query.
	r.search, err = tiered.NewKeyspace(r.c, tiered.Config[SearchResult]{
		Name:        namespace + "search",
		TTL:         5 * time.Minute,
		LocalTTL:    10 * time.Second,
		LocalPolicy: tiered.TinyLFU, // one-off queries must not evict the popular ones
		Loader: probedLoader(func(ctx context.Context, id string) (SearchResult, error) {
			m, err := searchBatch(ctx, db, []string{id})
			if err != nil {
				return SearchResult{}, err
			}
			return m[id], nil
		}),
		BatchLoader: func(ctx context.Context, ids []string) (map[string]SearchResult, error) {
			markDB(ctx)
			return searchBatch(ctx, db, ids)
		},
	})
	return err
}

func (r *replica) close() {
	r.c.Close()
	r.rdb.Close()
}

// searchID normalises a free-text query and hashes it into a key part:
// "  Red LAMP" and "red lamp" share one cache entry, and a query of any
// length or content becomes 16 hex digits.
func searchID(query string) (id, normalised string) {
	normalised = strings.ToLower(strings.Join(strings.Fields(query), " "))
	return keys.Hash(normalised), normalised
}

type queriesKey struct{}

// withQueries returns a context that carries the text behind each search
// id, and the ids. A hash cannot be reversed, so the loader needs the text
// from the caller; the cache passes the first caller's context values to
// the loader it shares.
func withQueries(ctx context.Context, queries ...string) (context.Context, []string) {
	m := make(map[string]string, len(queries))
	ids := make([]string, len(queries))
	for i, q := range queries {
		id, norm := searchID(q)
		m[id], ids[i] = norm, id
	}
	return context.WithValue(ctx, queriesKey{}, m), ids
}

var errNoQuery = errors.New("search: query text not in context")

func searchBatch(ctx context.Context, db *DB, ids []string) (map[string]SearchResult, error) {
	texts, _ := ctx.Value(queriesKey{}).(map[string]string)
	qs := make([]string, len(ids))
	for i, id := range ids {
		q, ok := texts[id]
		if !ok {
			return nil, fmt.Errorf("%w: id %s", errNoQuery, id)
		}
		qs[i] = q
	}
	found, err := db.Search(ctx, qs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]SearchResult, len(ids))
	for i, id := range ids {
		out[id] = SearchResult{Query: qs[i], ProductIDs: found[qs[i]]}
	}
	return out, nil
}

// A probe records which tiers one Get touched, so the load phase can sort
// latencies by tier: the go-redis hook marks Redis calls, the loaders mark
// database calls, and a Get that marked neither was a local hit. (A Get
// that joined another goroutine's fetch of the same id also marks nothing;
// once the cache is warm those are rare.)
type probe struct{ redis, db atomic.Bool }

type probeKey struct{}

func withProbe(ctx context.Context, p *probe) context.Context {
	return context.WithValue(ctx, probeKey{}, p)
}

func markRedis(ctx context.Context) {
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		p.redis.Store(true)
	}
}

func markDB(ctx context.Context) {
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		p.db.Store(true)
	}
}

func probedLoader[V any](load func(context.Context, string) (V, error)) func(context.Context, string) (V, error) {
	return func(ctx context.Context, id string) (V, error) {
		markDB(ctx)
		return load(ctx, id)
	}
}

// probeHook is a go-redis hook that marks the probe of every command's
// context. The bus's own traffic carries no probe and is not counted.
type probeHook struct{}

func (probeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (probeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		markRedis(ctx)
		return next(ctx, cmd)
	}
}

func (probeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		markRedis(ctx)
		return next(ctx, cmds)
	}
}
