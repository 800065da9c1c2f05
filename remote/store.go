package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Store is the Redis tier. It is safe for concurrent use and holds no state
// but the client, which its caller owns.
type Store struct {
	rdb          redis.UniversalClient
	g            Guard
	ctxDeadlines bool // rdb honours context deadlines by itself
}

// NewStore returns a Store over rdb (a *redis.Client, *redis.ClusterClient,
// a failover client or a ring). g, if not nil, guards every call (a circuit
// breaker); calls it refuses fail at once with ErrUnavailable.
func NewStore(rdb redis.UniversalClient, g Guard) *Store {
	return &Store{rdb: rdb, g: g, ctxDeadlines: honoursDeadlines(rdb)}
}

// HonoursDeadlines reports whether the client enforces context deadlines by
// itself (go-redis's ContextTimeoutEnabled); when it does not, every call
// runs on a goroutine of its own so that deadlines still hold.
func (s *Store) HonoursDeadlines() bool { return s.ctxDeadlines }

// Redis returns the client the store uses.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Get returns the bytes stored at key. found is false on a miss. The returned
// slice aliases an immutable string and must not be modified.
func (s *Store) Get(ctx context.Context, key string) (b []byte, found bool, err error) {
	r, err := guarded(s, ctx, func() (getResult, error) {
		b, found, err := s.get(ctx, key)
		return getResult{b, found}, err
	})
	return r.b, r.found, err
}

type getResult struct {
	b     []byte
	found bool
}

// get is Get without the guard.
func (s *Store) get(ctx context.Context, key string) (b []byte, found bool, err error) {
	v, err := s.rdb.Get(ctx, key).Result()
	if err == redis.Nil {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return readOnlyBytes(v), true, nil
}

// GetMany reads keys with pipelined GETs: one round trip on a single server,
// one per node on Redis Cluster (unlike MGET, it works across slots).
// out[i] is nil where keys[i] is absent. The slices must not be modified.
func (s *Store) GetMany(ctx context.Context, keys []string) (out [][]byte, err error) {
	return guarded(s, ctx, func() ([][]byte, error) { return s.getMany(ctx, keys) })
}

// getMany is GetMany without the guard.
func (s *Store) getMany(ctx context.Context, keys []string) (out [][]byte, err error) {
	if len(keys) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, err
	}
	out = make([][]byte, len(keys))
	for i, c := range cmds {
		v, err := c.Result()
		switch {
		case err == redis.Nil:
		case err != nil:
			return nil, err
		default:
			out[i] = readOnlyBytes(v)
		}
	}
	return out, nil
}

// Set writes env at key with ttl, removes the key's lease and publishes msg on
// channel (when msg is not empty), atomically in one round trip.
func (s *Store) Set(ctx context.Context, key, lease string, env []byte, ttl time.Duration, channel string, msg []byte) error {
	return guardedErr(s, ctx, func() error { return s.set(ctx, key, lease, env, ttl, channel, msg) })
}

// set is Set without the guard.
func (s *Store) set(ctx context.Context, key, lease string, env []byte, ttl time.Duration, channel string, msg []byte) error {
	return setScript.Run(ctx, s.rdb, []string{key, lease}, env, ms(ttl), channel, msg).Err()
}

// Fill writes env at key with ttl, without a lease and without publishing
// (fills are never broadcast: they change nothing a peer could hold).
func (s *Store) Fill(ctx context.Context, key string, env []byte, ttl time.Duration) error {
	return guardedErr(s, ctx, func() error { return s.fill(ctx, key, env, ttl) })
}

// fill is Fill without the guard.
func (s *Store) fill(ctx context.Context, key string, env []byte, ttl time.Duration) error {
	return s.rdb.Set(ctx, key, env, ttl).Err()
}

// DeleteBatch is the keys one delete script removes (all in one hash slot on
// Redis Cluster; at least one) and the invalidation message it publishes.
type DeleteBatch struct {
	Keys []string
	Msg  []byte
}

// Delete runs one delete-and-publish script per batch, pipelined: one round
// trip on a single server, one per node on Redis Cluster.
func (s *Store) Delete(ctx context.Context, channel string, batches []DeleteBatch) error {
	return guardedErr(s, ctx, func() error { return s.delete(ctx, channel, batches) })
}

// delete is Delete without the guard.
func (s *Store) delete(ctx context.Context, channel string, batches []DeleteBatch) error {
	calls := make([]scriptCall, len(batches))
	for i, b := range batches {
		calls[i] = scriptCall{delScript, b.Keys, []interface{}{channel, b.Msg}}
	}
	cmds, err := s.runPipelined(ctx, calls)
	if err != nil {
		return err
	}
	return firstErr(cmds)
}

// LeaseState is the outcome of GetOrLease for one key.
type LeaseState uint8

const (
	// Found: the value is present and fresh; no lease was taken.
	Found LeaseState = 1
	// Won: the value is absent or stale and the caller now holds the lease.
	Won LeaseState = 2
	// Lost: the value is absent or stale and another caller holds the lease.
	Lost LeaseState = 3
)

// LeaseResult is what GetOrLease saw for one key. Value is the fresh value
// when State is Found, and the stale value (or nil) otherwise; it aliases an
// immutable string and must not be modified.
type LeaseResult struct {
	State LeaseState
	Value []byte
}

// Lease names a value key and its lease key.
type Lease struct{ Key, Lease string }

// GetOrLease reads each value and, where it is absent or stale at nowMs
// (Unix ms), tries to take its lease with token for ttl, atomically per key
// and pipelined across keys: one round trip on a single server, one per
// node on Redis Cluster.
func (s *Store) GetOrLease(ctx context.Context, ls []Lease, token string, ttl time.Duration, nowMs int64) (out []LeaseResult, err error) {
	return guarded(s, ctx, func() ([]LeaseResult, error) { return s.getOrLease(ctx, ls, token, ttl, nowMs) })
}

// getOrLease is GetOrLease without the guard.
func (s *Store) getOrLease(ctx context.Context, ls []Lease, token string, ttl time.Duration, nowMs int64) ([]LeaseResult, error) {
	now := strconv.FormatInt(nowMs, 10)
	calls := make([]scriptCall, len(ls))
	for i, l := range ls {
		calls[i] = scriptCall{getOrLeaseScript, []string{l.Key, l.Lease}, []interface{}{token, ms(ttl), now}}
	}
	cmds, err := s.runPipelined(ctx, calls)
	if err != nil {
		return nil, err
	}
	out := make([]LeaseResult, len(cmds))
	for i, c := range cmds {
		r, err := c.Slice()
		if err != nil {
			return nil, err
		}
		if len(r) == 0 {
			return nil, fmt.Errorf("tiercache: empty lease reply")
		}
		st, _ := r[0].(int64)
		out[i].State = LeaseState(st)
		switch out[i].State {
		case Found, Won, Lost:
		default:
			return nil, fmt.Errorf("tiercache: unexpected lease reply %v", r)
		}
		if len(r) > 1 && r[1] != nil {
			v, ok := r[1].(string)
			if !ok {
				return nil, fmt.Errorf("tiercache: unexpected lease reply %v", r)
			}
			out[i].Value = readOnlyBytes(v)
		}
		if out[i].State == Found && out[i].Value == nil {
			return nil, fmt.Errorf("tiercache: lease reply found no value")
		}
	}
	return out, nil
}

// ReleaseLease gives up a lease the caller holds (after a failed load), so
// that waiting processes need not wait for it to expire.
func (s *Store) ReleaseLease(ctx context.Context, lease, token string) error {
	return s.ReleaseLeases(ctx, []string{lease}, token)
}

// ReleaseLeases gives up several leases held with token, pipelined.
func (s *Store) ReleaseLeases(ctx context.Context, leases []string, token string) error {
	return guardedErr(s, ctx, func() error { return s.releaseLeases(ctx, leases, token) })
}

// releaseLeases is ReleaseLeases without the guard.
func (s *Store) releaseLeases(ctx context.Context, leases []string, token string) error {
	calls := make([]scriptCall, len(leases))
	for i, l := range leases {
		calls[i] = scriptCall{releaseScript, []string{l}, []interface{}{token}}
	}
	_, err := s.runPipelined(ctx, calls)
	return err
}

// TryLeases tries to take each lease with token for ttl (SET NX PX),
// pipelined. won[i] reports whether leases[i] was taken. Background
// refreshes use it: the value is present, so only the lease matters.
func (s *Store) TryLeases(ctx context.Context, leases []string, token string, ttl time.Duration) (won []bool, err error) {
	return guarded(s, ctx, func() ([]bool, error) { return s.tryLeases(ctx, leases, token, ttl) })
}

// tryLeases is TryLeases without the guard.
func (s *Store) tryLeases(ctx context.Context, leases []string, token string, ttl time.Duration) (won []bool, err error) {
	cmds := make([]*redis.BoolCmd, len(leases))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, l := range leases {
			cmds[i] = p.SetNX(ctx, l, token, ttl)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	won = make([]bool, len(leases))
	for i, c := range cmds {
		won[i] = c.Val()
	}
	return won, nil
}

// Filled is one value a lease holder wants to store.
type Filled struct {
	Key, Lease string
	Env        []byte
	TTL        time.Duration
}

// FillLeased stores each value only while the lease taken with token still
// stands, pipelined. stored[i] is false where the lease was voided by a
// Set, Delete or expiry: the value must then be cached nowhere.
func (s *Store) FillLeased(ctx context.Context, token string, fills []Filled) (stored []bool, err error) {
	return guarded(s, ctx, func() ([]bool, error) { return s.fillLeased(ctx, token, fills) })
}

// fillLeased is FillLeased without the guard.
func (s *Store) fillLeased(ctx context.Context, token string, fills []Filled) (stored []bool, err error) {
	calls := make([]scriptCall, len(fills))
	for i, f := range fills {
		calls[i] = scriptCall{fillScript, []string{f.Key, f.Lease}, []interface{}{token, f.Env, ms(f.TTL)}}
	}
	cmds, err := s.runPipelined(ctx, calls)
	if err != nil {
		return nil, err
	}
	stored = make([]bool, len(cmds))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, err
		}
		stored[i] = n == 1
	}
	return stored, nil
}

// Version returns the version of the group stored at verKey, creating it
// from the server's clock when absent (see versionScript).
func (s *Store) Version(ctx context.Context, verKey string) (v uint64, err error) {
	return guarded(s, ctx, func() (uint64, error) { return s.version(ctx, verKey) })
}

// version is Version without the guard.
func (s *Store) version(ctx context.Context, verKey string) (uint64, error) {
	n, err := versionScript.Run(ctx, s.rdb, []string{verKey}).Int64()
	return uint64(n), err
}

// Bump advances the version at verKey and publishes prefix followed by the
// new version as a uvarint, atomically. It returns the new version.
func (s *Store) Bump(ctx context.Context, verKey, channel string, prefix []byte) (v uint64, err error) {
	return guarded(s, ctx, func() (uint64, error) { return s.bump(ctx, verKey, channel, prefix) })
}

// bump is Bump without the guard.
func (s *Store) bump(ctx context.Context, verKey, channel string, prefix []byte) (uint64, error) {
	n, err := bumpScript.Run(ctx, s.rdb, []string{verKey}, channel, prefix).Int64()
	return uint64(n), err
}

// LoadScripts loads every script into Redis (every master on Cluster), so
// that the first pipelined use of each is one round trip, not an EVALSHA
// refused with NOSCRIPT and an EVAL.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range []*redis.Script{setScript, delScript, fillScript, versionScript, bumpScript, getOrLeaseScript, releaseScript} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Publish sends msg on channel.
func (s *Store) Publish(ctx context.Context, channel string, msg []byte) error {
	return guardedErr(s, ctx, func() error { return s.publish(ctx, channel, msg) })
}

// publish is Publish without the guard.
func (s *Store) publish(ctx context.Context, channel string, msg []byte) error {
	return s.rdb.Publish(ctx, channel, msg).Err()
}

type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []interface{}
}

// runPipelined runs scripts by EVALSHA in one pipeline and re-sends, by
// EVAL, those the server did not know (after a restart or failover).
func (s *Store) runPipelined(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	if len(calls) == 1 {
		c := calls[0]
		cmd := c.script.Run(ctx, s.rdb, c.keys, c.args...)
		if err := cmd.Err(); err != nil {
			return nil, err
		}
		return []*redis.Cmd{cmd}, nil
	}
	cmds := make([]*redis.Cmd, len(calls))
	exec := func(retry []int, useEval bool) error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range retry {
				c := calls[i]
				if useEval {
					cmds[i] = c.script.Eval(ctx, p, c.keys, c.args...)
				} else {
					cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
				}
			}
			return nil
		})
		return err
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	err := exec(all, false)
	if err == nil {
		return cmds, nil
	}
	var missing []int
	for i, c := range cmds {
		if e := c.Err(); e != nil && strings.HasPrefix(e.Error(), "NOSCRIPT") {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return nil, err
	}
	if err := exec(missing, true); err != nil {
		return nil, err
	}
	return cmds, firstErr(cmds)
}

func firstErr(cmds []*redis.Cmd) error {
	for _, c := range cmds {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) string {
	m := d.Milliseconds()
	if m < 1 {
		m = 1
	}
	return strconv.FormatInt(m, 10)
}

// readOnlyBytes views s as bytes without copying. go-redis hands us a fresh
// string per reply, and the decoder only reads it.
func readOnlyBytes(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
