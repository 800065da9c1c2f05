package ratelimit

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/remote"
)

// call runs f, one Redis round trip, under the circuit breaker and bounded
// by the call timeout (an earlier deadline of ctx wins), and feeds the
// breaker its outcome. While the breaker is open it returns ErrUnavailable
// at once, without touching the network.
func (l *Limiter) call(ctx context.Context, f func(context.Context) (any, error)) (any, error) {
	if !l.br.Allow() {
		return nil, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.callTimeout)
	defer cancel()
	var v any
	var err error
	if l.ctxDeadlines {
		v, err = f(ctx)
	} else {
		v, err = detached(ctx, f)
	}
	failed := isFailure(err)
	l.br.Done(failed)
	if failed {
		l.warn.Warn("Redis call failed", zap.Error(err))
		reloadTopology(l.rdb)
	}
	return v, err
}

type reply struct {
	v   any
	err error
}

// detached runs f on a goroutine of its own and returns when f does or when
// ctx ends, whichever comes first: a go-redis client that ignores context
// deadlines would otherwise hold the caller for its whole ReadTimeout (3s
// by default). An abandoned call finishes unobserved within that timeout.
func detached(ctx context.Context, f func(context.Context) (any, error)) (any, error) {
	done := make(chan reply, 1)
	go func() {
		v, err := f(ctx)
		done <- reply{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// isFailure reports whether err is a sign that Redis is unavailable, as the
// cache tells it (remote.IsFailure: network errors, timeouts, LOADING,
// CLUSTERDOWN, MASTERDOWN, READONLY, ...), or that it is out of memory and
// refuses writes (OOM): a limiter that cannot write cannot limit.
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

// reloadTopology asks a Cluster client to re-read the slot map after a
// failure: go-redis does so on MOVED, but after a master dies it would keep
// dialling it until its periodic reload (go-redis issue #3979). The reload
// is asynchronous and coalesced by go-redis.
func reloadTopology(rdb redis.UniversalClient) {
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		cc.ReloadState(context.Background())
	}
}
