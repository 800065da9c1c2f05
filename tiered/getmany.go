package tiered

// GetMany: the local tier for every id, then one batch of the misses
// through the same miss path as Get (miss.go): one Redis round trip, one
// for the leases, one loader call, one for the fills.

import (
	"context"
	"errors"

	"github.com/tiercache/tiercache/keys"
)

// GetMany returns the values of ids: the local tier first, then one
// pipelined round trip to Redis for the rest (one per node on Redis
// Cluster), then one pipelined round trip to take the leases of what is
// still missing, then the BatchLoader (or the Loader, concurrently) for the
// ids whose lease this process won; ids whose lease another process holds
// wait for its fill, as in Get. Absent ids are not in the map. Like Get, it
// returns the Loader's values rather than a Redis error, and when ctx ends
// first it returns ctx's error (the loads go on for the cache).
func (k *Keyspace[V]) GetMany(ctx context.Context, ids []string) (map[string]V, error) {
	for _, id := range ids {
		if err := keys.Validate(id); err != nil {
			return nil, err
		}
	}
	out := make(map[string]V, len(ids))
	b := &batch[V]{loader: loader[V]{one: k.config.Loader, many: k.config.BatchLoader}}
	var seen map[string]bool // ids answered "not found" or queued as misses
	var misses []miss[V]
	now := k.client.clock.Now()
	for _, id := range ids {
		if _, ok := out[id]; ok || seen[id] {
			continue
		}
		h := k.hash(id)
		e, state := k.lookup(h, id, now)
		if state == hitFresh {
			if v, ok := k.hit(id, h, e, b.loader); ok {
				out[id] = v
				continue
			}
		} else {
			if misses == nil {
				misses = make([]miss[V], 0, len(ids)) // one allocation for every miss
			}
			misses = append(misses, miss[V]{id: id, hash: h, stale: k.staleFallback(e, state, now)})
		}
		if seen == nil {
			seen = make(map[string]bool, len(ids))
		}
		seen[id] = true
	}
	if len(misses) == 0 {
		return out, nil
	}
	b.misses = make([]*miss[V], len(misses))
	for i := range misses {
		b.misses[i] = &misses[i]
	}
	if k.client.closed.Load() {
		return out, ErrClosed
	}
	ctx, end := k.startMiss(ctx)
	var o outcome
	out, err := k.getManyMissed(ctx, b, out, &o)
	if end != nil {
		end(MissEnd{Tier: o.tier, Lease: o.lease, Load: o.load, IDs: len(b.misses), Err: err})
	}
	return out, err
}

// getManyMissed runs GetMany's batch and adds its values to out.
func (k *Keyspace[V]) getManyMissed(ctx context.Context, b *batch[V], out map[string]V, o *outcome) (map[string]V, error) {
	b.done = make(chan struct{})
	k.run(ctx, b)
	select {
	case <-b.done:
	case <-ctx.Done():
		return out, &OpError{Op: "get many", Key: keys.Key(k.config.Name, b.misses[0].id), Err: ctx.Err()}
	}
	var errs []error
	for _, m := range b.misses {
		o.merge(m.outcome)
		switch {
		case m.err == nil && !m.result.negative:
			out[m.id] = m.result.value
		case m.err != nil && !errors.Is(m.err, ErrNotFound):
			errs = append(errs, m.err)
		}
	}
	return out, errors.Join(errs...)
}
