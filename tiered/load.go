package tiered

// The load step: one loader call for every miss of a batch that needs one,
// whatever brought it there (a won lease, a corrupt value, Redis failing, a
// lease wait that ran out). A batch loads with the Config's Loader (per id,
// concurrently), its BatchLoader, or a GetOrLoad call's function.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// loader is what a batch loads with: a per-id loader (Config.Loader), a
// batch loader (Config.BatchLoader), or one call's loader (GetOrLoad).
type loader[V any] struct {
	one  func(ctx context.Context, id string) (V, error)
	many func(ctx context.Context, ids []string) (map[string]V, error)
	call func(ctx context.Context) (V, error)
}

func (l loader[V]) exists() bool { return l.one != nil || l.many != nil || l.call != nil }

// configLoader is what a Get loads with: the Config's Loader.
func (k *Keyspace[V]) configLoader() loader[V] { return loader[V]{one: k.config.Loader} }

// maxParallelLoads bounds the concurrent calls of a per-id loader for one
// batch.
const maxParallelLoads = 16

// loadAndFill loads every miss at a load step in one loader call, then
// fills what may be cached (fill.go).
func (k *Keyspace[V]) loadAndFill(ctx context.Context, b *batch[V]) {
	ms := b.at(stepLoadLease, stepLoadOver, stepLoadDown, stepLoadAlone)
	if len(ms) == 0 {
		return
	}
	if !b.loader.exists() {
		// Redis failed a cache-aside read: nothing to load with.
		for _, m := range ms {
			m.err = ErrNotFound
			k.orStale(m)
		}
		return
	}
	for _, m := range ms {
		if m.step == stepLoadDown || m.step == stepLoadAlone {
			k.counters.loaderDirect.Add(1)
		}
	}
	took := k.load(ctx, b.loader, ms)
	for _, m := range ms {
		m.outcome.load = took
	}
	k.fill(ctx, b, ms, took)
}

// load calls the loader for ms, leaving each one's value or error in
// m.result and m.err, and returns how long it took.
func (k *Keyspace[V]) load(ctx context.Context, l loader[V], ms []*miss[V]) time.Duration {
	start := time.Now()
	switch {
	case l.call != nil:
		k.loadOne(ctx, l, ms[0]) // GetOrLoad's batches have one miss
	case l.many != nil:
		k.loadMany(ctx, l.many, ms)
	case len(ms) == 1:
		k.loadOne(ctx, l, ms[0])
	default:
		var wg sync.WaitGroup
		sem := make(chan struct{}, maxParallelLoads)
		for _, m := range ms {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				k.loadOne(ctx, l, m)
			}()
		}
		wg.Wait()
	}
	return time.Since(start)
}

// loadOne calls a per-id (or one call's) loader, turning ErrNotFound into a
// negative result and a panic into an error.
func (k *Keyspace[V]) loadOne(ctx context.Context, l loader[V], m *miss[V]) {
	k.counters.loads.Add(1)
	k.callLoader(ctx, l, m)
	k.classifyLoad(m)
}

// callLoader calls l for m, leaving its value or error (a panic made one)
// in m.
func (k *Keyspace[V]) callLoader(ctx context.Context, l loader[V], m *miss[V]) {
	defer func() {
		if p := recover(); p != nil {
			m.err = fmt.Errorf("%w: keyspace %q id %q: %v", ErrLoaderPanic, k.config.Name, m.id, p)
		}
	}()
	switch {
	case l.call != nil:
		m.result.value, m.err = l.call(ctx)
	case l.one != nil:
		m.result.value, m.err = l.one(ctx, m.id)
	default:
		found, err := l.many(ctx, []string{m.id})
		v, ok := found[m.id]
		m.result, m.err = loaded[V]{value: v, negative: !ok}, err
	}
}

// loadMany calls a batch loader once for ms; ids absent from its result
// are "not found", and its error is every id's.
func (k *Keyspace[V]) loadMany(ctx context.Context, many func(context.Context, []string) (map[string]V, error), ms []*miss[V]) {
	k.counters.loads.Add(uint64(len(ms)))
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.id
	}
	var found map[string]V
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%w: keyspace %q batch of %d ids: %v", ErrLoaderPanic, k.config.Name, len(ids), p)
			}
		}()
		found, err = many(ctx, ids)
	}()
	for _, m := range ms {
		v, ok := found[m.id]
		m.result, m.err = loaded[V]{value: v, negative: !ok}, err
		k.classifyLoad(m)
	}
}

// classifyLoad turns a loader's ErrNotFound into a negative result and
// counts other errors.
func (k *Keyspace[V]) classifyLoad(m *miss[V]) {
	switch {
	case m.err == nil:
	case errors.Is(m.err, ErrNotFound):
		m.result, m.err = loaded[V]{negative: true}, nil
	default:
		k.counters.loadErrors.Add(1)
	}
}

// orStale ends a miss whose load failed: with the stale value when the
// StaleIfError window allows one, else with the error.
func (k *Keyspace[V]) orStale(m *miss[V]) {
	if m.stale == nil {
		m.finish(TierLoader, loaded[V]{}, m.err)
		return
	}
	k.counters.staleOnError.Add(1)
	if !errors.Is(m.err, ErrNotFound) {
		k.client.warn.Warn("loader failed; serving a stale value (StaleIfError)", zap.Error(m.err))
	}
	m.finish(TierStale, *m.stale, nil)
}
