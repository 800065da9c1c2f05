package tiered

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// GetMany returns the values of ids: the local tier first, then one
// pipelined round trip to Redis for the rest (one per node on Redis
// Cluster), then one pipelined round trip to take the leases of what is
// still missing, then the BatchLoader (or the Loader, concurrently) for the
// ids whose lease this process won. Absent ids are not in the map. Like
// Get, it returns the Loader's values rather than a Redis error.
func (k *Keyspace[V]) GetMany(ctx context.Context, ids []string) (map[string]V, error) {
	for _, id := range ids {
		if err := keys.Validate(id); err != nil {
			return nil, err
		}
	}
	out := make(map[string]V, len(ids))
	var miss []string
	var hs []uint64
	if len(ids) > 1 {
		miss, hs = make([]string, 0, len(ids)), make([]uint64, 0, len(ids))
	}
	var done map[string]bool // ids answered "not found" or queued as misses
	now := k.c.clk.Now()
	for _, id := range ids {
		if _, ok := out[id]; ok || done[id] {
			continue
		}
		if done == nil {
			done = make(map[string]bool, len(ids))
		}
		h := k.hash(id)
		e, st := k.lookup(h, id, now)
		switch {
		case st == hitFresh && e.neg:
			k.st.negativeHits.Add(1)
			done[id] = true
		case st == hitFresh:
			if now >= e.refreshAt {
				k.maybeRefreshEarly(id, h, e, now)
			}
			out[id] = e.val
		default:
			done[id] = true
			miss = append(miss, id)
			hs = append(hs, h)
		}
	}
	if len(miss) == 0 {
		return out, nil
	}
	if k.c.closed.Load() {
		return out, ErrClosed
	}
	return out, k.fetchMany(ctx, miss, hs, out)
}

// pending is one id of a GetMany that the local tier could not answer.
type pending struct {
	id  string
	h   uint64
	key string
	ver uint64
	tok uint64
}

func (k *Keyspace[V]) fetchMany(ctx context.Context, ids []string, hs []uint64, out map[string]V) error {
	ps := make([]pending, len(ids))
	rkeys := make([]string, len(ids))
	for i, id := range ids {
		ps[i] = pending{id: id, h: hs[i], tok: k.local.Token(hs[i])}
	}
	for i, id := range ids {
		key, ver, err := k.keyOf(ctx, id)
		if err != nil {
			k.redisError("version", keys.Key(k.cfg.Name, id), err)
			return k.loadManyDirect(ctx, ps, out, true)
		}
		ps[i].ver, ps[i].key = ver, key
		rkeys[i] = ps[i].key
	}
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	bs, err := k.c.store.GetMany(rctx, rkeys)
	cancel()
	if err != nil {
		k.redisError("get many", rkeys[0], err)
		return k.loadManyDirect(ctx, ps, out, true)
	}
	var rest, corrupt []pending
	for i, b := range bs {
		p := ps[i]
		if b == nil {
			k.st.redisMisses.Add(1)
			rest = append(rest, p)
			continue
		}
		l, st, _ := k.accept(p.id, p.h, p.key, p.ver, b, p.tok)
		switch st {
		case redisCorrupt:
			corrupt = append(corrupt, p)
			continue
		case redisStale:
			k.st.redisMisses.Add(1)
			rest = append(rest, p)
			continue
		}
		k.st.redisHits.Add(1)
		if !l.neg {
			out[p.id] = l.val
		}
	}
	if !k.hasLoader() || len(rest)+len(corrupt) == 0 {
		return nil
	}
	if k.cfg.DisableLeases {
		rest = append(rest, corrupt...)
		corrupt = nil
	}
	var errs []error
	// Corrupt values are in the way of a lease: load and overwrite them.
	if len(corrupt) > 0 {
		errs = append(errs, k.loadManyAndFill(ctx, corrupt, out))
	}
	if len(rest) > 0 {
		if k.cfg.DisableLeases {
			errs = append(errs, k.loadManyAndFill(ctx, rest, out))
		} else {
			errs = append(errs, k.loadManyLeased(ctx, rest, out))
		}
	}
	return errors.Join(errs...)
}

func (k *Keyspace[V]) hasLoader() bool { return k.cfg.Loader != nil || k.cfg.BatchLoader != nil }

// loadManyLeased takes the leases of ps in one round trip, loads the won
// ones in one batch, fills them under their leases in one round trip, and
// waits (as Get does) for the ones other processes are loading.
func (k *Keyspace[V]) loadManyLeased(ctx context.Context, ps []pending, out map[string]V) error {
	token := k.c.leaseToken()
	ls := make([]remote.Lease, len(ps))
	for i, p := range ps {
		ls[i] = remote.Lease{Key: p.key, Lease: keys.LeaseKey(p.key)}
	}
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	rs, err := k.c.store.GetOrLease(rctx, ls, token, k.cfg.LeaseTTL, time.Now().UnixMilli())
	cancel()
	if err != nil {
		k.redisError("lease", ls[0].Key, err)
		return k.loadManyDirect(ctx, ps, out, true)
	}
	var won, lost, corrupt []pending
	for i, r := range rs {
		p := ps[i]
		switch r.State {
		case remote.Found:
			if l, st, _ := k.accept(p.id, p.h, p.key, p.ver, r.Value, p.tok); st != redisCorrupt {
				if !l.neg {
					out[p.id] = l.val
				}
			} else {
				corrupt = append(corrupt, p)
			}
		case remote.Won:
			k.st.leasesWon.Add(1)
			won = append(won, p)
		default:
			lost = append(lost, p)
		}
	}
	var errs []error
	if len(corrupt) > 0 {
		errs = append(errs, k.loadManyAndFill(ctx, corrupt, out))
	}
	if len(won) > 0 {
		errs = append(errs, k.fillWon(ctx, won, token, out))
	}
	// The losers wait for their holders exactly as Get does.
	if len(lost) > 0 && k.cfg.Loader != nil {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, p := range lost {
			p := p
			wg.Add(1)
			go func() {
				defer wg.Done()
				v, err := k.miss(ctx, p.id, p.h, nil)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					out[p.id] = v
				case !errors.Is(err, ErrNotFound):
					errs = append(errs, err)
				}
			}()
		}
		wg.Wait()
	} else if len(lost) > 0 {
		// BatchLoader only: load the losers' ids ourselves, cache nothing.
		errs = append(errs, k.loadManyDirect(ctx, lost, out, false))
	}
	return errors.Join(errs...)
}

// fillWon loads the ids whose leases this process holds and fills Redis
// under the leases, then the local tier where Redis accepted the fill.
func (k *Keyspace[V]) fillWon(ctx context.Context, won []pending, token string, out map[string]V) error {
	res, took, err := k.loadBatch(ctx, ids(won))
	var fills []remote.Filled
	var filled []pending
	var fresh []int64
	var release []string
	delta := deltaMs(took)
	defer func() {
		// Failed or uncached loads give their leases back, so that other
		// processes need not wait for them to expire.
		if len(release) == 0 {
			return
		}
		rctx, cancel := k.c.redisCtx(context.WithoutCancel(ctx), k.c.opts.WriteTimeout)
		defer cancel()
		if rerr := k.c.store.ReleaseLeases(rctx, release, token); rerr != nil {
			k.redisError("release lease", release[0], rerr)
		}
	}()
	for _, p := range won {
		l, ok := res[p.id]
		if !ok || (l.neg && k.cfg.NegativeTTL == 0) {
			release = append(release, keys.LeaseKey(p.key))
			continue
		}
		if !l.neg {
			out[p.id] = l.val
		}
		env, ttl, freshUntil, eerr := k.envelope(l, took)
		if eerr != nil {
			continue
		}
		fills = append(fills, remote.Filled{Key: p.key, Lease: keys.LeaseKey(p.key), Env: env, TTL: ttl})
		filled = append(filled, p)
		fresh = append(fresh, freshUntil)
	}
	if len(fills) > 0 {
		rctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
		stored, ferr := k.c.store.FillLeased(rctx, token, fills)
		cancel()
		if ferr != nil {
			k.redisError("fill", fills[0].Key, ferr)
		} else {
			for i, p := range filled {
				if !stored[i] {
					k.st.fillsRefused.Add(1)
					continue
				}
				k.fillLocal(p.id, p.h, p.ver, res[p.id], fresh[i], delta, p.tok)
			}
		}
	}
	return err
}

// loadManyAndFill loads without leases and overwrites Redis.
func (k *Keyspace[V]) loadManyAndFill(ctx context.Context, ps []pending, out map[string]V) error {
	res, took, err := k.loadBatch(ctx, ids(ps))
	for _, p := range ps {
		l, ok := res[p.id]
		if !ok || (l.neg && k.cfg.NegativeTTL == 0) {
			continue
		}
		if !l.neg {
			out[p.id] = l.val
		}
		env, ttl, freshUntil, eerr := k.envelope(l, took)
		if eerr != nil {
			continue
		}
		rctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
		ferr := k.c.store.Fill(rctx, p.key, env, ttl)
		cancel()
		if ferr != nil {
			k.redisError("fill", p.key, ferr)
			continue
		}
		k.fillLocal(p.id, p.h, p.ver, l, freshUntil, deltaMs(took), p.tok)
	}
	return err
}

// loadManyDirect loads ps without Redis: Redis is failing (redisDown: the
// values are cached locally for DegradedLocalTTL only), or another process
// holds the leases (cached nowhere).
func (k *Keyspace[V]) loadManyDirect(ctx context.Context, ps []pending, out map[string]V, redisDown bool) error {
	if !k.hasLoader() {
		return nil
	}
	k.st.loaderDirect.Add(uint64(len(ps)))
	res, _, err := k.loadBatch(ctx, ids(ps))
	for _, p := range ps {
		l, ok := res[p.id]
		if !ok {
			continue
		}
		if !l.neg {
			out[p.id] = l.val
		}
		if redisDown {
			k.fillDegraded(p.id, p.h, l, p.tok)
		}
	}
	return err
}

// loadBatch loads ids with the BatchLoader, or with the Loader, at most
// maxParallelLoads at a time. Ids that failed are absent from the result;
// ids reported absent are negative.
func (k *Keyspace[V]) loadBatch(ctx context.Context, ids []string) (map[string]loaded[V], time.Duration, error) {
	lctx, cancel := k.c.loadCtx(ctx, k.cfg.LoadTimeout)
	defer cancel()
	start := time.Now()
	res := make(map[string]loaded[V], len(ids))
	if k.cfg.BatchLoader != nil {
		m, err := k.batchLoad(lctx, ids)
		if err != nil {
			return res, time.Since(start), err
		}
		for _, id := range ids {
			if v, ok := m[id]; ok {
				res[id] = loaded[V]{val: v}
			} else {
				res[id] = loaded[V]{neg: true}
			}
		}
		return res, time.Since(start), nil
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	sem := make(chan struct{}, maxParallelLoads)
	for _, id := range ids {
		id := id
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			l, _, err := k.load(lctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			res[id] = l
		}()
	}
	wg.Wait()
	return res, time.Since(start), errors.Join(errs...)
}

// maxParallelLoads bounds the concurrent Loader calls of one GetMany.
const maxParallelLoads = 16

func (k *Keyspace[V]) batchLoad(ctx context.Context, ids []string) (m map[string]V, err error) {
	k.st.loads.Add(uint64(len(ids)))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: keyspace %q batch of %d ids: %v", ErrLoaderPanic, k.cfg.Name, len(ids), p)
		}
		if err != nil {
			k.st.loadErrors.Add(uint64(len(ids)))
		}
	}()
	return k.cfg.BatchLoader(ctx, ids)
}

func ids(ps []pending) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.id
	}
	return out
}
