package tiered

// Repairing writes made with an outdated epoch or group version. A writer
// builds its keys from the epoch and versions it knows; when one was just
// renewed elsewhere (a bump, or a re-creation after Redis lost the key), the
// write went where no reader looks, while readers may already have filled
// the new key from the source as it was before the write. So each process
// remembers its last writes, and when it learns a newer epoch or group
// version than one of them used, it invalidates that id again under it.
// Readers then converge within the propagation time, and never later than
// LocalTTL.

import (
	"context"
	"sync"

	"github.com/tiercache/tiercache/internal/clock"
)

// recentWrites is a ring of this process's last writes of a keyspace.
type recentWrites struct {
	mu   sync.Mutex
	ring [256]recentWrite
	next int
}

type recentWrite struct {
	id             string
	epoch, version uint64 // what the write's key was built with
	at             clock.Time
}

func (r *recentWrites) add(w recentWrite) {
	r.mu.Lock()
	r.ring[r.next] = w
	r.next = (r.next + 1) % len(r.ring)
	r.mu.Unlock()
}

// outdated returns the ids written since since whose epoch (or, for group,
// version) is older than epoch (or version), and marks them current so that
// they are repaired once.
func (r *recentWrites) outdated(since clock.Time, fix func(w *recentWrite) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for i := range r.ring {
		w := &r.ring[i]
		if w.id != "" && w.at >= since && fix(w) {
			ids = append(ids, w.id)
		}
	}
	return ids
}

// remember records the writes of ms (resolved misses: id, epoch, version).
func (k *Keyspace[V]) remember(ms []*miss[V]) {
	now := k.client.clock.Now()
	for _, m := range ms {
		k.recent.add(recentWrite{id: m.id, epoch: m.epoch, version: m.version, at: now})
	}
}

// repairWindow is how far back a newly learnt epoch or version repairs
// writes: a write can only have used an outdated one while this process had
// not heard of the new one yet, which the bus bounds.
func (k *Keyspace[V]) repairWindow() clock.Time {
	return k.client.clock.Now().Add(-2 * k.client.options.BusTimeout)
}

// learntEpoch repairs recent writes made under an epoch older than epoch.
func (k *Keyspace[V]) learntEpoch(epoch uint64) {
	k.repair(k.recent.outdated(k.repairWindow(), func(w *recentWrite) bool {
		if w.epoch >= epoch {
			return false
		}
		w.epoch = epoch
		return true
	}))
}

// learntVersion repairs recent writes of group made under an older version.
func (k *Keyspace[V]) learntVersion(group string, version uint64) {
	k.repair(k.recent.outdated(k.repairWindow(), func(w *recentWrite) bool {
		if w.version >= version || k.config.Group(w.id) != group {
			return false
		}
		w.version = version
		return true
	}))
}

// repair invalidates ids again, under the current epoch and versions, in
// the background.
func (k *Keyspace[V]) repair(ids []string) {
	if len(ids) == 0 {
		return
	}
	k.counters.writesRepaired.Add(uint64(len(ids)))
	k.client.spawn(&task{what: "repair", keyspace: k.config.Name, id: ids[0]}, func() {
		ctx, cancel := context.WithTimeout(k.client.ctx, k.client.options.WriteTimeout)
		defer cancel()
		_ = k.Delete(ctx, ids...) // a failure is queued for replay like any
	})
}
