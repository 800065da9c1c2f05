package tiered

// Writes: Set (write-through), Delete (explicit invalidation), group and
// keyspace bumps, and FlushLocal. Each changes Redis and publishes its
// invalidation in one atomic script, so peers evict their copies; a write
// that cannot reach Redis queues its invalidation for replay (replay.go).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// SetOption changes one Set.
type SetOption func(*setOptions)

type setOptions struct {
	ttl time.Duration
}

// WithTTL makes one Set's value fresh in Redis for ttl (jitter is still
// added) instead of the keyspace's TTL or TTLFor's answer. A ttl <= 0 is
// ignored.
func WithTTL(ttl time.Duration) SetOption {
	return func(o *setOptions) { o.ttl = ttl }
}

// Set writes v through: to Redis (voiding any lease, so a slow loader's
// older value cannot overwrite it), to the local tier, and, in the same
// atomic Redis script, publishes an invalidation so every peer drops its
// copy. The local tier holds v as the codec decodes it, as every peer does.
// On error the local copy is dropped too and the error names the key. With
// VersionOf, a value older than the one Redis holds changes nothing: Set
// returns nil, drops this process's copy (the next Get reads Redis's) and
// counts Stats.StaleWritesRefused.
func (k *Keyspace[V]) Set(ctx context.Context, id string, v V, opts ...SetOption) error {
	if err := keys.Validate(id); err != nil {
		return err
	}
	if k.client.closed.Load() {
		return ErrClosed
	}
	var so setOptions
	for _, o := range opts {
		o(&so)
	}
	h := k.hash(id)
	l := loaded[V]{value: v}
	payload, err := k.encode(v)
	if err != nil {
		return &OpError{Op: "set", Key: keys.Key(k.config.Name, id), Err: err}
	}
	gen := k.local.Token(h)
	m, err := k.resolve(ctx, id) // first: it may learn the server's clock
	var s sealed
	if err == nil {
		s = k.seal(l, payload, k.ttlFor(id, l, so.ttl), 0)
		var msgs [][]byte
		if msgs, err = k.client.publisher.KeysMessage(k.config.Name, []string{id}); err == nil {
			err = k.client.store.Set(ctx, remote.Write{Key: m.key, Lease: keys.LeaseKey(m.key), Env: s.env, TTL: s.redisTTL, Msg: msgs[0], Version: s.version})
		}
	}
	if err != nil {
		return k.setFailed(m, h, err)
	}
	k.client.sent.Add(1)
	k.client.accepted("publish")
	k.counters.sets.Add(1)
	k.remember([]*miss[V]{m})
	// Hold locally what peers will decode, not v itself: a field the codec
	// does not store, or a slice the caller goes on changing, must not make
	// this process disagree with the others.
	var held loaded[V]
	if err := k.config.Codec.Unmarshal(payload, &held.value); err != nil {
		k.local.Delete(h, id)
		return nil
	}
	// Store locally only if nothing touched the shard since before the
	// Redis write; otherwise a concurrent write may be newer than ours.
	e := k.newEntry(decoded[V]{loaded: held, expiry: s.expiry}, m.version, k.client.clock.Precise())
	if !k.local.Replace(h, k.localEntry(id, &e, len(payload)), gen) {
		k.counters.localFillsSkipped.Add(1)
	}
	return nil
}

// setFailed ends a Set that Redis did not take. This process's copy goes
// in every case: Redis may hold something else now.
func (k *Keyspace[V]) setFailed(m *miss[V], h uint64, err error) error {
	k.local.Delete(h, m.id)
	key := m.key
	if key == "" {
		key = keys.Key(k.config.Name, m.id)
	}
	switch {
	case errors.Is(err, remote.ErrOlder):
		// Redis holds a newer version: nothing changed, nothing to say.
		k.counters.staleWritesRefused.Add(1)
		return nil
	case errors.Is(err, remote.ErrNotStored):
		// Redis is full: it deleted the old value and published instead.
		k.client.sent.Add(1)
	default:
		// Redis may or may not have the new value: queue the id's
		// invalidation for when Redis is back.
		k.client.queueKeys(k.config.Name, []string{m.id}, err)
	}
	return &OpError{Op: "set", Key: key, Err: err}
}

// Delete removes ids from Redis and from every process's local tier (the
// explicit invalidation of the caching guide), and voids their leases so
// that loads in flight are not cached. Ids on one Redis Cluster slot go in
// one atomic script with their invalidation message.
func (k *Keyspace[V]) Delete(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		if err := keys.Validate(id); err != nil {
			return err
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if k.client.closed.Load() {
		return ErrClosed
	}
	batches, ms, first, err := k.deleteBatches(ctx, ids)
	if err == nil {
		err = k.client.store.Delete(ctx, batches)
	}
	// Drop local copies whatever Redis said: after a failed Delete the
	// caller must not read its own old value here.
	for _, id := range ids {
		k.local.Delete(k.hash(id), id)
	}
	if err != nil {
		k.client.queueKeys(k.config.Name, ids, err)
		return &OpError{Op: "delete", Key: first, Err: err}
	}
	k.client.sent.Add(uint64(len(batches)))
	k.client.accepted("publish")
	k.counters.deletes.Add(uint64(len(ids)))
	k.remember(ms)
	return nil
}

// maxDeleteKeys bounds the keys of one delete script (Lua's unpack limit is
// a few thousand values); maxDeleteBytes keeps each batch's message under
// invalidation.MaxMessageSize, so every batch publishes exactly one message.
const (
	maxDeleteKeys  = 512
	maxDeleteBytes = invalidation.MaxMessageSize - 1024
)

// deleteBatches groups ids by Redis Cluster slot (all in one group on a
// single server) into batches of one script and one message each. It
// returns the resolved ids too, and the first key, for errors.
func (k *Keyspace[V]) deleteBatches(ctx context.Context, ids []string) (out []remote.DeleteBatch, ms []*miss[V], first string, err error) {
	type batch struct {
		ids, keys []string
		bytes     int
	}
	first = keys.Key(k.config.Name, ids[0])
	ms = make([]*miss[V], 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			ms = append(ms, &miss[V]{id: id})
		}
	}
	if err := k.resolveKeys(ctx, ms); err != nil {
		return nil, nil, first, err
	}
	first = ms[0].key
	var all []*batch
	open := make(map[uint16]*batch)
	for _, m := range ms {
		slot := k.client.store.SlotOf(m.key)
		b := open[slot]
		if b == nil || len(b.keys)+2 > maxDeleteKeys || b.bytes+len(m.id)+8 > maxDeleteBytes {
			b = &batch{}
			open[slot] = b
			all = append(all, b)
		}
		b.ids = append(b.ids, m.id)
		b.keys = append(b.keys, m.key, keys.LeaseKey(m.key))
		b.bytes += len(m.id) + 8
	}
	out = make([]remote.DeleteBatch, 0, len(all))
	for _, b := range all {
		msgs, err := k.client.publisher.KeysMessage(k.config.Name, b.ids)
		if err != nil {
			return nil, nil, first, err
		}
		if len(msgs) != 1 {
			return nil, nil, first, fmt.Errorf("tiercache: delete batch split into %d messages", len(msgs))
		}
		out = append(out, remote.DeleteBatch{Keys: b.keys, Msg: msgs[0]})
	}
	return out, ms, first, nil
}

// InvalidateGroup makes every id of group unreachable, in Redis and in every
// process's local tier, with one INCR-like version bump and one broadcast.
// Old values are never enumerated; they expire on their own.
func (k *Keyspace[V]) InvalidateGroup(ctx context.Context, group string) error {
	if k.config.Group == nil {
		return fmt.Errorf("tiercache: keyspace %q has no Group function", k.config.Name)
	}
	if err := keys.Validate(group); err != nil {
		return err
	}
	if k.client.closed.Load() {
		return ErrClosed
	}
	versionKey := keys.VersionKey(k.config.Name, group)
	v, err := k.bumpVersion(ctx, remote.Version{Key: versionKey}, group)
	if err != nil {
		k.client.queueGroup(k.config.Name, group, err)
		return &OpError{Op: "invalidate group", Key: versionKey, Err: err}
	}
	k.counters.groupBumps.Add(1)
	k.versions.raise(group, v, k.client.clock.Precise().Add(k.config.LocalTTL))
	return nil
}

// InvalidateAll makes every value of the keyspace unreachable, in Redis and in
// every process's local tier, with one bump of the keyspace's epoch (part of
// every Redis key of the keyspace) and one broadcast. Old values are never
// enumerated; they expire on their own. Use it when the source changed in a
// way no list of ids describes (a TRUNCATE, a bulk import).
func (k *Keyspace[V]) InvalidateAll(ctx context.Context) error {
	if k.client.closed.Load() {
		return ErrClosed
	}
	if err := k.bumpEpoch(ctx); err != nil {
		k.client.queueOverflow(k.config.Name)
		return &OpError{Op: "invalidate all", Key: keys.EpochKey(k.config.Name), Err: err}
	}
	return nil
}

// bumpEpoch makes every value of the keyspace unreachable, everywhere.
func (k *Keyspace[V]) bumpEpoch(ctx context.Context) error {
	inc, err := k.client.incarnation(ctx)
	if err != nil {
		return err
	}
	key := keys.EpochKey(k.config.Name)
	v, err := k.bumpVersion(ctx, remote.Version{Key: key, IncarnationKey: keys.IncarnationKey(key), Incarnation: inc}, epochGroup)
	if err != nil {
		return err
	}
	k.epoch.raise(v)
	k.flush(false)
	return nil
}

// bumpVersion advances the version v names and broadcasts it as a bump of
// group, in one script.
func (k *Keyspace[V]) bumpVersion(ctx context.Context, v remote.Version, group string) (uint64, error) {
	prefix, err := k.client.publisher.BumpPrefix(k.config.Name, group)
	if err != nil {
		return 0, err
	}
	v.Floor, v.Prefix = k.client.server.highest.Load(), prefix
	n, err := k.client.store.Bump(ctx, v)
	if err != nil {
		return 0, err
	}
	k.client.sawVersion(n)
	k.client.sent.Add(1)
	return n, nil
}

// FlushLocal drops every local entry of this keyspace in every process
// sharing the channel; Redis is left as it is.
func (k *Keyspace[V]) FlushLocal(ctx context.Context) error {
	k.flush(false)
	msg, err := k.client.publisher.FlushMessage(k.config.Name)
	if err == nil {
		err = k.client.publish(ctx, msg)
	}
	if err != nil {
		return &OpError{Op: "flush", Key: k.config.Name, Err: err}
	}
	return nil
}
