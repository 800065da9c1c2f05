package pgcdc

import (
	"context"

	"go.uber.org/zap"
)

// runApplier applies committed batches in commit order until Close, each
// until every invalidation of it returned nil, and only then lets its end
// position be confirmed.
func (w *Watcher) runApplier() {
	defer w.wg.Done()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.led.wake:
		}
		for b := w.led.take(); b != nil; b = w.led.take() {
			if !w.apply(b) {
				return // closed: b stays unconfirmed, the next holder of the slot applies it
			}
			w.led.done(b.end)
			w.st.transactions.Add(uint64(b.txns))
		}
	}
}

// apply runs b's invalidations, retrying what failed with backoff; false
// when the Watcher closed first.
func (w *Watcher) apply(b *batch) bool {
	backoff := w.cfg.RetryBackoff
	for {
		failed := false
		for t := range b.work {
			if err := w.applyTarget(t, &b.work[t]); err != nil {
				if w.ctx.Err() != nil {
					return false
				}
				failed = true
				w.st.errors.Add(1)
				w.warn.Warn("pgcdc: invalidation failed; retrying with backoff, nothing after it is confirmed meanwhile",
					zap.String("target", w.targets[t].name), zap.Error(err))
			}
		}
		if !failed {
			return true
		}
		w.st.retries.Add(1)
		if !sleep(w.ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, w.cfg.MaxRetryBackoff)
	}
}

// applyTarget runs what wk asks of target t, removing from wk each part that
// succeeded, so that a retry repeats only what failed.
func (w *Watcher) applyTarget(t int, wk *work) error {
	tg := w.targets[t]
	if wk.all {
		if tg.all != nil {
			if err := w.call(func(ctx context.Context) error { return tg.all.InvalidateAll(ctx) }, 1); err != nil {
				return err
			}
			*wk = work{}
			return nil
		}
		w.st.errors.Add(1)
		w.warn.Error("pgcdc: the whole keyspace must be invalidated (TRUNCATE, or a rule function panicked) but the target has no InvalidateAll; only the ids and groups known are invalidated",
			zap.String("target", tg.name))
		wk.all = false
	}
	if len(wk.ids) > 0 {
		ids := make([]string, 0, len(wk.ids))
		for id := range wk.ids {
			ids = append(ids, id)
		}
		if err := w.call(func(ctx context.Context) error { return tg.inv.Delete(ctx, ids...) }, len(ids)); err != nil {
			return err
		}
		wk.ids = nil
	}
	for g := range wk.groups {
		if err := w.call(func(ctx context.Context) error { return tg.inv.InvalidateGroup(ctx, g) }, 1); err != nil {
			return err
		}
		delete(wk.groups, g)
	}
	return nil
}

// call runs one Invalidator call under ApplyTimeout and counts it.
func (w *Watcher) call(f func(context.Context) error, items int) error {
	ctx, cancel := context.WithTimeout(w.ctx, w.cfg.ApplyTimeout)
	defer cancel()
	if err := f(ctx); err != nil {
		return err
	}
	w.st.calls.Add(1)
	w.st.invalidations.Add(uint64(items))
	return nil
}
