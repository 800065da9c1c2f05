package remote

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrUnavailable is returned, without any network wait, while the Guard
// (the Client's circuit breaker) keeps Redis calls from going out.
var ErrUnavailable = errors.New("tiercache: Redis unavailable (circuit breaker open)")

// Guard decides whether a Redis call may go out and learns how it went. The
// Client's circuit breaker implements it.
type Guard interface {
	Allow() bool
	Done(failed bool)
}

// guarded runs f under the store's Guard, if any, with ctx bounded by
// timeout (when positive; an earlier caller deadline wins), and makes that
// deadline hold even when the go-redis client ignores context deadlines
// (its ContextTimeoutEnabled is off, the default): f then runs in its own
// goroutine, and a call that outlives ctx is abandoned to finish (within
// the client's own ReadTimeout) on its own. f must not write to shared
// state; it returns its result.
func guarded[T any](s *Store, ctx context.Context, timeout time.Duration, f func(context.Context) (T, error)) (T, error) {
	if s.opts.Guard != nil && !s.opts.Guard.Allow() {
		var zero T
		return zero, ErrUnavailable
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var v T
	var err error
	if s.ctxDeadlines {
		v, err = f(ctx)
	} else {
		v, err = withDeadline(ctx, f)
	}
	failed := IsFailure(err)
	if s.opts.Guard != nil {
		s.opts.Guard.Done(failed)
	}
	if failed && s.cluster {
		reloadTopology(s.rdb)
	}
	return v, err
}

// reloadTopology asks a Cluster client to re-read the slot map after a
// failure: go-redis does so on MOVED but not on a refused connection, and
// would keep dialling a dead master until its periodic reload (10s; 60s
// from v9.22), go-redis issue #3979. The reload is asynchronous and
// coalesced by go-redis.
func reloadTopology(rdb redis.UniversalClient) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}

// Do runs f, a Redis call of the caller's own (a script the Store does not
// know), as the Store runs its own calls: under the Guard, bounded by
// timeout also on clients that ignore context deadlines, and with a
// Cluster client's slot map reloaded after a failure (see guarded).
func (s *Store) Do(ctx context.Context, timeout time.Duration, f func(context.Context) (any, error)) (any, error) {
	return guarded(s, ctx, timeout, f)
}

func guardedErr(s *Store, ctx context.Context, timeout time.Duration, f func(context.Context) error) error {
	_, err := guarded(s, ctx, timeout, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

type result[T any] struct {
	v   T
	err error
}

func withDeadline[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok && ctx.Done() == nil {
		return f(ctx)
	}
	ch := make(chan result[T], 1)
	go func() {
		v, err := f(ctx)
		ch <- result[T]{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// honoursDeadlines reports whether rdb's own timeouts follow context
// deadlines, so that no extra goroutine is needed to enforce them.
func honoursDeadlines(rdb redis.UniversalClient) bool {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// IsFailure tells a sign that Redis is unavailable (network errors,
// timeouts, a server still loading or without a master) from a normal
// outcome: a miss, a caller's cancellation, or an error reply from a working
// server.
func IsFailure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return hasPrefix(re.Error(), unavailableReplies)
	}
	return true
}

// unavailableReplies are the error replies of a server that cannot serve
// now: busy, loading, or without a master.
var unavailableReplies = []string{"LOADING", "BUSY", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "TRYAGAIN"}

// transientReplies are the error replies of a server that is busy, loading,
// failing over or full: the same call may succeed later.
var transientReplies = append(slices.Clone(unavailableReplies), "OOM", "NOSCRIPT", "MOVED", "ASK")

// hasPrefix reports whether msg starts with one of prefixes.
func hasPrefix(msg string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// IsPermanent tells an error that retrying cannot cure (an ACL refusal, a
// wrong password, a script Redis refuses, a key of another type) from a
// transient one (a network error, a timeout, a server busy, loading, failing
// over or out of memory). A cancelled context is neither.
func IsPermanent(err error) bool {
	var re redis.Error
	if err == nil || errors.Is(err, redis.Nil) || !errors.As(err, &re) {
		return false
	}
	return !hasPrefix(re.Error(), transientReplies)
}

// PermissionHint explains a permanent error in terms of what the Redis user
// lacks, when it is an ACL refusal: Redis's own text for a PUBLISH refused
// inside a script does not name the command or the channel.
func PermissionHint(err error, channel string) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "can't publish to the channel"),
		strings.Contains(msg, "NOPERM") && strings.Contains(msg, "channels"):
		return "the Redis user may not use the invalidation channel " + channel + ": grant it with ACL SETUSER <user> &" + channel
	case strings.Contains(msg, "can't run this command"):
		return "the Redis user may not run a command tiercache's scripts use: grant it +get +set +del +publish +time (and +eval +evalsha +script)"
	case strings.HasPrefix(msg, "NOPERM") && strings.Contains(msg, "command"):
		return "the Redis user lacks a command permission: " + msg
	case strings.Contains(msg, "NOPERM") && strings.Contains(msg, "keys"):
		return "the Redis user may not touch tiercache's keys: grant it ~* (or ~<keyspace>:* and ~{<keyspace>:*)"
	case strings.HasPrefix(msg, "WRONGPASS"), strings.HasPrefix(msg, "NOAUTH"):
		return "Redis refuses the credentials: check the go-redis client's Username and Password"
	}
	return ""
}
