package tiered

// Where a value lives in Redis: its key is built from the keyspace's name,
// the keyspace's epoch and the id's group version (keys.ValueKey), so that
// one bump of either makes every key built with the old one unreachable.
// Both are read from Redis once, then kept current by the bus (a bump
// message carries the new version; an epoch bump travels as a bump of the
// empty group name, which no real group can have). While the bus is not
// healthy, or after a resubscription, they are read again before use, since
// a bump may have been missed.

import (
	"context"
	"fmt"
	"sync"

	"github.com/tiercache/tiercache/internal/clock"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// epochGroup is the group name under which epoch bumps travel on the bus.
const epochGroup = ""

// keyOf returns where id's value lives in Redis, and the group version the
// key was built with (0 without groups).
func (k *Keyspace[V]) keyOf(ctx context.Context, id string) (string, uint64, error) {
	m, err := k.resolve(ctx, id)
	return m.key, m.version, err
}

// resolve is resolveKeys for one id.
func (k *Keyspace[V]) resolve(ctx context.Context, id string) (*miss[V], error) {
	m := &miss[V]{id: id}
	return m, k.resolveKeys(ctx, []*miss[V]{m})
}

// resolveKeys sets the Redis key and group version of every miss in ms,
// reading the epoch at most once and each group's version at most once.
func (k *Keyspace[V]) resolveKeys(ctx context.Context, ms []*miss[V]) error {
	ep, err := k.currentEpoch(ctx)
	if err != nil {
		return err
	}
	var seen map[string]uint64 // group versions read for this call
	for _, m := range ms {
		if k.config.Group != nil {
			g := k.config.Group(m.id)
			v, ok := seen[g]
			if !ok {
				if v, err = k.groupVersion(ctx, g); err != nil {
					return err
				}
				if seen == nil {
					seen = make(map[string]uint64)
				}
				seen[g] = v
			}
			m.version = v
		}
		m.epoch = ep
		m.key = keys.ValueKey(k.config.Name, ep, m.version, m.id)
	}
	return nil
}

// currentEpoch returns the keyspace's epoch, reading it from Redis when it
// is not known or the bus may have missed a bump. The read checks the
// incarnation of the server's data: an epoch written under another one is
// renewed (see server.go).
func (k *Keyspace[V]) currentEpoch(ctx context.Context) (uint64, error) {
	if k.client.clock.Now() < k.client.serveUntil() {
		if v, ok := k.epoch.get(); ok {
			return v, nil
		}
	}
	gen := k.epoch.token()
	inc, err := k.client.incarnation(ctx)
	if err != nil {
		return 0, err
	}
	key := keys.EpochKey(k.config.Name)
	v, err := k.readVersion(ctx, remote.Version{Key: key, IncarnationKey: keys.IncarnationKey(key), Incarnation: inc}, epochGroup)
	if err != nil {
		return 0, err
	}
	k.epoch.fill(v, gen)
	k.learntEpoch(v)
	return v, nil
}

// renewEpoch reads the epoch again, under the current incarnation.
func (k *Keyspace[V]) renewEpoch(ctx context.Context) {
	if _, err := k.currentEpoch(ctx); err != nil {
		k.redisError("epoch", keys.EpochKey(k.config.Name), err)
	}
}

// groupVersion returns the current version of group.
func (k *Keyspace[V]) groupVersion(ctx context.Context, group string) (uint64, error) {
	now := k.client.clock.Now()
	if now < k.client.serveUntil() {
		if v, ok := k.versions.get(group, now); ok {
			return v, nil
		}
	}
	if err := keys.Validate(group); err != nil {
		return 0, fmt.Errorf("tiercache: group of keyspace %q: %w", k.config.Name, err)
	}
	gen := k.versions.token()
	v, err := k.readVersion(ctx, remote.Version{Key: keys.VersionKey(k.config.Name, group)}, group)
	if err != nil {
		return 0, err
	}
	k.versions.fill(group, v, k.client.clock.Precise().Add(k.config.LocalTTL), gen)
	k.learntVersion(group, v)
	return v, nil
}

// readVersion reads (or creates) the version v names, which is announced,
// when new, as a bump of group.
func (k *Keyspace[V]) readVersion(ctx context.Context, v remote.Version, group string) (uint64, error) {
	prefix, err := k.client.publisher.BumpPrefix(k.config.Name, group)
	if err != nil {
		return 0, err
	}
	v.Prefix, v.Floor = prefix, k.client.server.highest.Load()
	r, err := k.client.store.Version(ctx, v)
	if err != nil {
		return 0, err
	}
	if r.Created {
		k.client.sent.Add(1)
	}
	k.client.sawVersion(r.Version)
	return r.Version, nil
}

// epoch is the keyspace's epoch as this process knows it.
type epoch struct {
	mu    sync.Mutex
	value uint64
	known bool
	gen   uint64 // advanced by forget, so that a read begun before cannot land after
}

func (e *epoch) get() (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.value, e.known
}

func (e *epoch) token() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gen
}

// fill stores an epoch read from Redis unless forget came in between.
func (e *epoch) fill(v uint64, gen uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gen == gen {
		e.value, e.known = max(e.value, v), true
	}
}

// raise merges an epoch learnt from a bump.
func (e *epoch) raise(v uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.value, e.known = max(e.value, v), true
}

// forget makes the next use read the epoch from Redis again.
func (e *epoch) forget() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.value, e.known = 0, false
	e.gen++
}

// versions caches the current version of each group of a keyspace. Versions
// only grow (see remote's version scripts), so a bump that arrives out of
// order with a read is merged with max. A flush clears the cache and
// advances gen, so that a read of a version that started before the flush
// cannot land after it.
type versions struct {
	mu  sync.RWMutex
	m   map[string]versionEntry
	gen uint64
}

type versionEntry struct {
	version uint64
	expire  clock.Time // a cached version is served for LocalTTL at most
}

func (vs *versions) get(group string, now clock.Time) (uint64, bool) {
	vs.mu.RLock()
	e, ok := vs.m[group]
	vs.mu.RUnlock()
	if !ok || now >= e.expire {
		return 0, false
	}
	return e.version, true
}

func (vs *versions) token() uint64 {
	vs.mu.RLock()
	defer vs.mu.RUnlock()
	return vs.gen
}

// fill stores a version read from Redis unless a flush came in between.
func (vs *versions) fill(group string, v uint64, expire clock.Time, gen uint64) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.gen == gen {
		vs.raiseLocked(group, v, expire)
	}
}

// raise merges a version learnt from a bump.
func (vs *versions) raise(group string, v uint64, expire clock.Time) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.raiseLocked(group, v, expire)
}

func (vs *versions) raiseLocked(group string, v uint64, expire clock.Time) {
	if vs.m == nil {
		vs.m = make(map[string]versionEntry)
	}
	if e, ok := vs.m[group]; ok && e.version > v {
		return
	}
	vs.m[group] = versionEntry{version: v, expire: expire}
}

func (vs *versions) flush() {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.gen++
	clear(vs.m)
}
