package ratelimit

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/remote"
)

// call runs f, one Redis round trip, the way the cache runs its own calls
// (remote.Store.Do): under the circuit breaker, which it feeds, bounded by
// the call timeout (an earlier deadline of ctx wins) also on clients that
// ignore context deadlines, and with a Cluster client's slot map reloaded
// after a failure. While the breaker is open it returns ErrUnavailable at
// once, without touching the network.
func (l *Limiter) call(ctx context.Context, f func(context.Context) (any, error)) (any, error) {
	v, err := l.store.Do(ctx, l.opts.callTimeout, f)
	if isFailure(err) {
		l.warn.Warn("Redis call failed", zap.Error(err))
	}
	return v, err
}

// isFailure reports whether err is a sign that Redis is unavailable, as the
// cache tells it (remote.IsFailure: network errors, timeouts, LOADING,
// CLUSTERDOWN, MASTERDOWN, READONLY, ...), or that it is out of memory and
// refuses writes (OOM): a limiter that cannot write cannot limit. (OOM
// does not open the breaker: such a Redis answers at once.)
func isFailure(err error) bool {
	var re redis.Error
	if errors.As(err, &re) && strings.HasPrefix(re.Error(), "OOM ") {
		return true
	}
	return remote.IsFailure(err)
}

// unavailable reports whether err means Redis could not be asked: the
// breaker refused the call or the call failed.
func unavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || isFailure(err)
}
