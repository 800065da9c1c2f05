package tiered

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/invalidation"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/local"
	"github.com/tiercache/tiercache/remote"
)

// Set writes v through: to Redis (voiding any lease, so a slow loader's
// older value cannot overwrite it), to the local tier, and, in the same
// atomic Redis script, publishes an invalidation so every peer drops its
// copy. On error the local copy is dropped too and the error names the key.
func (k *Keyspace[V]) Set(ctx context.Context, id string, v V) error {
	if err := keys.Validate(id); err != nil {
		return err
	}
	if k.c.closed.Load() {
		return ErrClosed
	}
	h := k.hash(id)
	payload, err := k.encode(v)
	if err != nil {
		return &OpError{Op: "set", Key: keys.Key(k.cfg.Name, id), Err: err}
	}
	tok := k.local.Token(h)
	key, ver, err := k.keyOf(ctx, id)
	if err != nil {
		k.local.Delete(h, id)
		k.c.queueKeys(k.cfg.Name, []string{id}, err)
		return &OpError{Op: "set", Key: keys.Key(k.cfg.Name, id), Err: err}
	}
	ttl := k.jitter(k.cfg.TTL)
	env := remote.AppendEnvelope(make([]byte, 0, len(payload)+remote.EnvelopeOverhead),
		&remote.Envelope{FreshUntilMs: time.Now().Add(ttl).UnixMilli(), Payload: payload})
	msgs, err := k.c.pub.KeysMessage(k.cfg.Name, []string{id})
	if err != nil {
		return &OpError{Op: "set", Key: key, Err: err}
	}
	wctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
	err = k.c.store.Set(wctx, key, keys.LeaseKey(key), env, ttl+k.staleWindow(false), k.c.opts.Channel, msgs[0])
	cancel()
	if err != nil {
		// Redis may or may not have the new value: serve neither locally,
		// and queue the id's invalidation for when Redis is back.
		k.local.Delete(h, id)
		k.c.queueKeys(k.cfg.Name, []string{id}, err)
		return &OpError{Op: "set", Key: key, Err: err}
	}
	k.c.sent.Add(1)
	k.st.sets.Add(1)
	// Store locally only if nothing touched the shard since before the
	// Redis write; otherwise a concurrent write may be newer than ours.
	e := k.newEntry(loaded[V]{val: v}, ver, k.c.clk.Precise(), ttl, 0)
	if !k.local.Replace(h, local.Entry[entry[V]]{Key: id, Value: e, Expire: max(e.fresh, k.staleEnd(&e))}, tok) {
		k.st.localFillsSkipped.Add(1)
	}
	return nil
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
	if k.c.closed.Load() {
		return ErrClosed
	}
	batches, first, err := k.deleteBatches(ctx, ids)
	if err == nil {
		wctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
		err = k.c.store.Delete(wctx, k.c.opts.Channel, batches)
		cancel()
	}
	// Drop local copies whatever Redis said: after a failed Delete the
	// caller must not read its own old value here.
	for _, id := range ids {
		k.local.Delete(k.hash(id), id)
	}
	if err != nil {
		k.c.queueKeys(k.cfg.Name, ids, err)
		if first == "" {
			first = keys.Key(k.cfg.Name, ids[0])
		}
		return &OpError{Op: "delete", Key: first, Err: err}
	}
	k.c.sent.Add(uint64(len(batches)))
	k.st.deletes.Add(uint64(len(ids)))
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
// single server) into batches of one script and one message each.
func (k *Keyspace[V]) deleteBatches(ctx context.Context, ids []string) ([]remote.DeleteBatch, string, error) {
	_, cluster := k.c.opts.Redis.(*redis.ClusterClient)
	type batch struct {
		ids, keys []string
		bytes     int
	}
	var all []*batch
	open := make(map[uint16]*batch)
	seen := make(map[string]bool, len(ids))
	first := ""
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		key, _, err := k.keyOf(ctx, id)
		if err != nil {
			return nil, keys.Key(k.cfg.Name, id), err
		}
		if first == "" {
			first = key
		}
		var slot uint16
		if cluster {
			slot = keys.Slot(key)
		}
		b := open[slot]
		if b == nil || len(b.keys)+2 > maxDeleteKeys || b.bytes+len(id)+8 > maxDeleteBytes {
			b = &batch{}
			open[slot] = b
			all = append(all, b)
		}
		b.ids = append(b.ids, id)
		b.keys = append(b.keys, key, keys.LeaseKey(key))
		b.bytes += len(id) + 8
	}
	out := make([]remote.DeleteBatch, 0, len(all))
	for _, b := range all {
		msgs, err := k.c.pub.KeysMessage(k.cfg.Name, b.ids)
		if err != nil {
			return nil, first, err
		}
		if len(msgs) != 1 {
			return nil, first, fmt.Errorf("tiercache: delete batch split into %d messages", len(msgs))
		}
		out = append(out, remote.DeleteBatch{Keys: b.keys, Msg: msgs[0]})
	}
	return out, first, nil
}

// InvalidateGroup makes every id of group unreachable, in Redis and in every
// process's local tier, with one INCR-like version bump and one broadcast.
// Old values are never enumerated; they expire on their own.
func (k *Keyspace[V]) InvalidateGroup(ctx context.Context, group string) error {
	if k.cfg.Group == nil {
		return fmt.Errorf("tiercache: keyspace %q has no Group function", k.cfg.Name)
	}
	if err := keys.Validate(group); err != nil {
		return err
	}
	if k.c.closed.Load() {
		return ErrClosed
	}
	verKey := keys.VersionKey(k.cfg.Name, group)
	prefix, err := k.c.pub.BumpPrefix(k.cfg.Name, group)
	if err != nil {
		return &OpError{Op: "invalidate group", Key: verKey, Err: err}
	}
	wctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
	v, err := k.c.store.Bump(wctx, verKey, k.c.opts.Channel, prefix)
	cancel()
	if err != nil {
		k.c.queueGroup(k.cfg.Name, group, err)
		return &OpError{Op: "invalidate group", Key: verKey, Err: err}
	}
	k.c.sent.Add(1)
	k.st.groupBumps.Add(1)
	k.vers.raise(group, v, k.c.clk.Precise()+int64(k.cfg.LocalTTL))
	return nil
}

// InvalidateAll makes every value of the keyspace unreachable, in Redis and in
// every process's local tier, with one bump of the keyspace's epoch (part of
// every Redis key of the keyspace) and one broadcast. Old values are never
// enumerated; they expire on their own. Use it when the source changed in a
// way no list of ids describes (a TRUNCATE, a bulk import).
func (k *Keyspace[V]) InvalidateAll(ctx context.Context) error {
	if k.c.closed.Load() {
		return ErrClosed
	}
	if err := k.bumpEpoch(ctx); err != nil {
		k.c.queueOverflow(k.cfg.Name)
		return &OpError{Op: "invalidate all", Key: k.epochKey(), Err: err}
	}
	return nil
}

// FlushLocal drops every local entry of this keyspace in every process (Redis
// is left as it is).
func (k *Keyspace[V]) FlushLocal(ctx context.Context) error {
	k.flush()
	msg, err := k.c.pub.FlushMessage(k.cfg.Name)
	if err == nil {
		err = k.c.publish(ctx, msg)
	}
	if err != nil {
		return &OpError{Op: "flush", Key: k.cfg.Name, Err: err}
	}
	return nil
}

// evict applies a peer's invalidation of ids.
func (k *Keyspace[V]) evict(ids []string) {
	for _, id := range ids {
		k.local.Delete(k.hash(id), id)
	}
	k.st.evicted.Add(uint64(len(ids)))
}

// bump applies a peer's group version bumps (and epoch bumps, which travel
// as bumps of the empty group).
func (k *Keyspace[V]) bump(groups []string, vers []uint64) {
	exp := k.c.clk.Precise() + int64(k.cfg.LocalTTL)
	for i, g := range groups {
		if g == epochGroup {
			k.ep.raise(vers[i])
			k.flush()
			continue
		}
		k.vers.raise(g, vers[i], exp)
	}
}

// reset is flush after a resubscription or a Redis recovery: bumps of the
// epoch may have been missed too.
func (k *Keyspace[V]) reset() {
	k.ep.forget()
	k.flush()
}

// replay re-sends invalidations that could not reach Redis and returns how
// many went out. Each call queues its ids again if it fails.
func (k *Keyspace[V]) replay(ctx context.Context, ids, groups []string, wholeKeyspace bool) (sent int) {
	if wholeKeyspace {
		if err := k.bumpEpoch(ctx); err != nil {
			k.c.queueOverflow(k.cfg.Name)
			return 0
		}
		k.c.log.Info("replay queue overflowed during a Redis outage; keyspace epoch bumped", zap.String("keyspace", k.cfg.Name))
	}
	if len(ids) > 0 && k.Delete(ctx, ids...) == nil {
		sent += len(ids)
	}
	for _, g := range groups {
		if k.InvalidateGroup(ctx, g) == nil {
			sent++
		}
	}
	return sent
}

// flush drops the local tier and the cached versions. In-flight fills that
// started before it are refused (Purge advances every shard's generation).
func (k *Keyspace[V]) flush() {
	k.vers.flush()
	k.local.Purge()
}
