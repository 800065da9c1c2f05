package tiered

import (
	"context"
	"strconv"
	"sync"

	"github.com/tiercache/tiercache/keys"
)

// A keyspace's epoch is part of every Redis key of the keyspace once it is
// non-zero ("<ns>:e<epoch>:<id>"). Bumping it makes every value of the
// keyspace unreachable at once, the way a group bump does for one group. It
// is bumped only when invalidations queued during a Redis outage overflowed
// the replay queue: the ids are forgotten, so the whole keyspace goes.
//
// The epoch is read from Redis once, then kept current by the bus (a bump
// is a bump message for the empty group name, which no real group can
// have). While the bus is not healthy, or after a resubscription, it is
// read again before use, since a bump may have been missed.
type epoch struct {
	mu    sync.Mutex
	val   uint64
	known bool
	gen   uint64
}

func (e *epoch) get() (uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.val, e.known
}

func (e *epoch) token() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.gen
}

// fill stores an epoch read from Redis unless a reset came in between.
func (e *epoch) fill(v uint64, tok uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.gen == tok {
		e.val, e.known = max(e.val, v), true
	}
}

// raise merges an epoch learnt from a bump.
func (e *epoch) raise(v uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.val, e.known = max(e.val, v), true
}

// forget makes the next use read the epoch from Redis again.
func (e *epoch) forget() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.known = false
	e.val = 0
	e.gen++
}

// epochGroup is the group name under which epoch bumps travel on the bus.
const epochGroup = ""

func (k *Keyspace[V]) epochKey() string { return "{" + k.cfg.Name + ":epoch}" }

// currentEpoch returns the keyspace's epoch, reading it from Redis when it
// is not known or the bus may have missed a bump.
func (k *Keyspace[V]) currentEpoch(ctx context.Context) (uint64, error) {
	if k.c.clk.Now() < k.c.serveUntil.Load() {
		if v, ok := k.ep.get(); ok {
			return v, nil
		}
	}
	tok := k.ep.token()
	rctx, cancel := k.c.redisCtx(ctx, k.c.opts.ReadTimeout)
	defer cancel()
	b, found, err := k.c.store.Get(rctx, k.epochKey())
	if err != nil {
		return 0, err
	}
	var v uint64
	if found {
		if v, err = strconv.ParseUint(string(b), 10, 64); err != nil {
			return 0, err
		}
	}
	k.ep.fill(v, tok)
	return v, nil
}

// keyOf returns where id's value lives in Redis, and the group version the
// key was built with (0 without groups):
//
//	<ns>:<id>                      no groups, epoch 0
//	<ns>:v<version>:<id>           with groups
//	<ns>:e<epoch>:...              the same, once the epoch was bumped
func (k *Keyspace[V]) keyOf(ctx context.Context, id string) (string, uint64, error) {
	ep, err := k.currentEpoch(ctx)
	if err != nil {
		return "", 0, err
	}
	ns := k.cfg.Name
	if ep > 0 {
		ns += ":e" + strconv.FormatUint(ep, 10)
	}
	if k.cfg.Group == nil {
		return keys.Key(ns, id), 0, nil
	}
	ver, err := k.groupVersion(ctx, k.cfg.Group(id))
	if err != nil {
		return "", 0, err
	}
	return keys.VersionedKey(ns, ver, id), ver, nil
}

// bumpEpoch makes every value of the keyspace unreachable, everywhere.
func (k *Keyspace[V]) bumpEpoch(ctx context.Context) error {
	prefix, err := k.c.pub.BumpPrefix(k.cfg.Name, epochGroup)
	if err != nil {
		return err
	}
	wctx, cancel := k.c.redisCtx(ctx, k.c.opts.WriteTimeout)
	defer cancel()
	v, err := k.c.store.Bump(wctx, k.epochKey(), k.c.opts.Channel, prefix)
	if err != nil {
		return err
	}
	k.c.sent.Add(1)
	k.ep.raise(v)
	k.flush()
	return nil
}
