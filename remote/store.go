package remote

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// Store is the Redis tier. It is safe for concurrent use and holds no state
// but the client, which its caller owns, and its options.
type Store struct {
	rdb          redis.UniversalClient
	opts         Options
	ctxDeadlines bool        // rdb honours context deadlines by itself
	cluster      bool        // rdb spreads keys over hash slots
	noFlags      atomic.Bool // the server refuses script flags (see flaggedScript)
}

// Options configures a Store.
type Options struct {
	// Guard, if not nil, guards every call (the Client's circuit breaker);
	// calls it refuses fail at once with ErrUnavailable.
	Guard Guard
	// Channel is the Pub/Sub channel writes publish their invalidations on.
	Channel string
	// ReadTimeout bounds each read (GET, pipelined GETs, lease requests,
	// version reads); WriteTimeout each write. A caller's earlier deadline
	// wins. Zero: no bound beyond the caller's context.
	ReadTimeout, WriteTimeout time.Duration
	// Wall is the caller's clock, read around ServerState's request.
	// Default time.Now.
	Wall func() time.Time
}

// NewStore returns a Store over rdb (a *redis.Client, *redis.ClusterClient,
// a failover client or a ring).
func NewStore(rdb redis.UniversalClient, o Options) *Store {
	return &Store{rdb: rdb, opts: o, ctxDeadlines: honoursDeadlines(rdb), cluster: isCluster(rdb)}
}

func (s *Store) wall() time.Time {
	if s.opts.Wall != nil {
		return s.opts.Wall()
	}
	return time.Now()
}

// HonoursDeadlines reports whether the client enforces context deadlines by
// itself (go-redis's ContextTimeoutEnabled); when it does not, every call
// runs on a goroutine of its own so that deadlines still hold.
func (s *Store) HonoursDeadlines() bool { return s.ctxDeadlines }

// Get returns the bytes stored at key. found is false on a miss. The returned
// slice aliases an immutable string and must not be modified.
func (s *Store) Get(ctx context.Context, key string) (b []byte, found bool, err error) {
	b, err = guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) ([]byte, error) {
		v, err := s.rdb.Get(ctx, key).Result()
		return present(v, err), absentIsNil(err)
	})
	return b, b != nil, err
}

// GetMany reads keys: one GET for one key, pipelined GETs for more, one round
// trip on a single server and one per node on Redis Cluster (unlike MGET, it
// works across slots). out[i] is nil where keys[i] is absent. The slices must
// not be modified.
func (s *Store) GetMany(ctx context.Context, keys []string) (out [][]byte, err error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if len(keys) == 1 {
		b, _, err := s.Get(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	return guarded(s, ctx, s.opts.ReadTimeout, func(ctx context.Context) ([][]byte, error) {
		cmds := make([]*redis.StringCmd, len(keys))
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = p.Get(ctx, k)
			}
			return nil
		})
		if absentIsNil(err) != nil {
			return nil, err
		}
		// Pipelined reports the first command's error, which may be an
		// absent key ahead of a real failure: each reply is looked at.
		out := make([][]byte, len(keys))
		for i, c := range cmds {
			v, err := c.Result()
			if err = absentIsNil(err); err != nil {
				return nil, err
			}
			out[i] = present(v, c.Err())
		}
		return out, nil
	})
}

// present returns the reply's bytes, or nil when the key was absent.
func present(v string, err error) []byte {
	if err != nil {
		return nil
	}
	return readOnlyBytes(v)
}

// absentIsNil turns redis.Nil (an absent key) into no error.
func absentIsNil(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// Write is one value to store: its key, the lease key a write voids, the
// envelope, its TTL in Redis and the invalidation message to publish with it.
type Write struct {
	Key, Lease string
	Env        []byte
	TTL        time.Duration
	Msg        []byte // published on the Store's channel; empty: nothing
	// Version, when not empty, is the value's version (VersionBytes): a
	// value older than the one Redis holds is not stored.
	Version string
}

// ErrOlder is returned by Set for a value older than the one Redis holds:
// nothing changed.
var ErrOlder = errors.New("tiercache: Redis holds a newer version")

// ErrNotStored wraps Redis's refusal of a value (maxmemory with noeviction):
// the value was not stored, and the key's old value was deleted instead and
// its invalidation published, so nothing stale is left behind.
var ErrNotStored = errors.New("tiercache: Redis refused the value; the old one was deleted instead")

// Set stores w.Env at w.Key with w.TTL, removes the key's lease and publishes
// w.Msg, atomically in one round trip. When Redis refuses the value it
// returns ErrNotStored (the old value deleted and the message published all
// the same).
func (s *Store) Set(ctx context.Context, w Write) error {
	return guardedErr(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) error {
		r, err := setScript.Run(ctx, s.rdb, []string{w.Key, w.Lease}, w.Env, ms(w.TTL), s.opts.Channel, w.Msg, w.Version).Result()
		if err != nil {
			return err
		}
		switch r := r.(type) {
		case string:
			return fmt.Errorf("%w: %s", ErrNotStored, r)
		case int64:
			if r == 0 {
				return ErrOlder
			}
		}
		return nil
	})
}

// Fill stores each value without a lease and without publishing (fills are
// never broadcast: they change nothing a peer could hold), pipelined.
func (s *Store) Fill(ctx context.Context, fills []Write) error {
	return guardedErr(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) error {
		if len(fills) == 1 {
			return s.rdb.Set(ctx, fills[0].Key, fills[0].Env, fills[0].TTL).Err()
		}
		// Pipelined returns the first command's error, and a SET without
		// NX has no "absent" reply to skip over.
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, f := range fills {
				p.Set(ctx, f.Key, f.Env, f.TTL)
			}
			return nil
		})
		return err
	})
}

// DeleteBatch is the keys one delete script removes (all in one hash slot on
// Redis Cluster; at least one) and the invalidation message it publishes.
type DeleteBatch struct {
	Keys []string
	Msg  []byte
}

// Delete runs one delete-and-publish script per batch, pipelined: one round
// trip on a single server, one per node on Redis Cluster.
func (s *Store) Delete(ctx context.Context, batches []DeleteBatch) error {
	return guardedErr(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) error {
		calls := make([]scriptCall, len(batches))
		for i, b := range batches {
			calls[i] = scriptCall{delScript, b.Keys, []interface{}{s.opts.Channel, b.Msg}}
		}
		_, err := s.runPipelined(ctx, calls) // it returns the first command's error
		return err
	})
}

// Publish sends msg on the Store's channel.
func (s *Store) Publish(ctx context.Context, msg []byte) error {
	return guardedErr(s, ctx, s.opts.WriteTimeout, func(ctx context.Context) error {
		return s.rdb.Publish(ctx, s.opts.Channel, msg).Err()
	})
}

// LoadScripts loads every script into Redis (every master on Cluster), so
// that the first pipelined use of each is one round trip, not an EVALSHA
// refused with NOSCRIPT and an EVAL.
func (s *Store) LoadScripts(ctx context.Context) error {
	for _, sc := range allScripts {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil && !isFlagsRefused(err) {
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
