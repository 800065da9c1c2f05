package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/keys"
	"github.com/tiercache/tiercache/remote"
)

// Limiter decides whether requests may go ahead, against limits shared by
// every process that uses the same Redis. It is safe for concurrent use,
// runs nothing in the background and needs no Close; the caller owns the
// Redis client.
type Limiter struct {
	rdb     redis.UniversalClient
	store   *remote.Store // rdb under the breaker: how each call goes out
	opts    Options
	invalid error // from bad Options: every call returns it
	br      *breaker.Breaker
	local   *localStore // nil unless OnError is FailLocal
	log     *zap.Logger
	warn    *zap.Logger // log, at most one entry per message per second
}

// request is one call, checked: it travels from validation to Redis and,
// when Redis cannot be asked, to the local state.
type request struct {
	redisKey string // "<Prefix>:{<key>}:<algorithm>"
	limit    Limit  // normalized: defaults applied
	n        int
}

// New returns a Limiter over rdb: a *redis.Client, *redis.ClusterClient,
// failover client or any other redis.UniversalClient, which the caller
// keeps owning. Options are checked here, but New returns no error: a
// Limiter made from a nil client or bad Options returns an error wrapping
// ErrInvalidOptions from every call.
//
// Each Redis call is bounded by 100ms (an earlier deadline of the caller's
// context wins), also on clients that ignore context deadlines
// (ContextTimeoutEnabled off, go-redis's default): there each call runs on
// a goroutine of its own, so enable it for the fastest path.
func New(rdb redis.UniversalClient, opts Options) *Limiter {
	opts, err := opts.withDefaults()
	if err == nil && rdb == nil {
		err = fmt.Errorf("%w: nil Redis client", ErrInvalidOptions)
	}
	l := &Limiter{rdb: rdb, opts: opts, invalid: err}
	l.log = opts.Logger.Named("ratelimit")
	l.warn = l.log.WithOptions(zap.WrapCore(func(core zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(core, time.Second, 1, 0)
	}))
	l.br = l.newBreaker()
	l.store = remote.NewStore(rdb, remote.Options{Guard: l.br})
	if opts.OnError == FailLocal {
		l.local = newLocalStore(opts.localKeys)
	}
	if err == nil && !l.store.HonoursDeadlines() {
		l.log.Info("the go-redis client ignores context deadlines (ContextTimeoutEnabled is off): " +
			"each rate-limit call runs on a goroutine of its own to stay bounded; enable it for the fastest path")
	}
	return l
}

// Allow is AllowN with n = 1.
func (l *Limiter) Allow(ctx context.Context, key string, limit Limit) (Result, error) {
	return l.AllowN(ctx, key, limit, 1)
}

// AllowN decides whether key may make n requests now under limit, and if
// so counts them, atomically, in one round trip to Redis. n = 0 reports the
// key's state without counting anything.
//
// It returns an error only for bad input (wrapping ErrInvalidKey,
// ErrInvalidLimit, ErrInvalidN or ErrInvalidOptions; no Redis call is made),
// a context the caller cancelled, or an error reply from a working Redis
// (for example WRONGTYPE when something else wrote the limiter's key).
// When Redis cannot be asked (down, slow past the call bound, circuit
// breaker open) it never returns an error: the decision is taken as
// Options.OnError says and Result.Degraded is true.
func (l *Limiter) AllowN(ctx context.Context, key string, limit Limit, n int) (Result, error) {
	req, err := l.request(ctx, key, limit, n)
	if err != nil {
		return Result{}, opError("allow", key, err)
	}
	v, err := l.call(ctx, func(ctx context.Context) (any, error) {
		return algorithms[req.limit.Algorithm].script.Run(ctx, l.rdb, []string{req.redisKey}, scriptArgs(req)...).Result()
	})
	var res Result
	if err == nil {
		res, err = parseReply(v)
	}
	switch {
	case err == nil:
		if res.Allowed && l.local != nil && req.n > 0 {
			l.local.take(req, l.local.now(), true)
		}
		return res, nil
	case unavailable(err):
		return l.degraded(req), nil
	default:
		return Result{}, opError("allow", key, fmt.Errorf("%v: %w", req.limit, err))
	}
}

// Reset forgets key's state under limit's algorithm, in Redis and in this
// process's local state: the key starts afresh. Limits of the same key
// under other algorithms are kept. Unlike AllowN, Reset reports a Redis
// failure (wrapping ErrUnavailable while the circuit breaker is open): the
// shared state could not be cleared.
func (l *Limiter) Reset(ctx context.Context, key string, limit Limit) error {
	req, err := l.request(ctx, key, limit, 0)
	if err != nil {
		return opError("reset", key, err)
	}
	if l.local != nil {
		l.local.forget(req.redisKey)
	}
	_, err = l.call(ctx, func(ctx context.Context) (any, error) {
		return l.rdb.Del(ctx, req.redisKey).Result()
	})
	if err != nil {
		return opError("reset", key, err)
	}
	return nil
}

// opError names the operation and the key in err. An invalid key is named
// by err already, shortened if it is long.
func opError(op, key string, err error) error {
	if errors.Is(err, ErrInvalidKey) {
		return fmt.Errorf("ratelimit: %s: %w", op, err)
	}
	return fmt.Errorf("ratelimit: %s %q: %w", op, key, err)
}

// request checks one call's input and builds its request. Nothing is sent
// to Redis for a call that fails here.
func (l *Limiter) request(ctx context.Context, key string, limit Limit, n int) (request, error) {
	if l.invalid != nil {
		return request{}, l.invalid
	}
	if err := keys.Validate(key); err != nil {
		return request{}, err
	}
	limit, err := limit.normalized()
	if err != nil {
		return request{}, err
	}
	if err := checkN(limit, n); err != nil {
		return request{}, err
	}
	if err := ctx.Err(); err != nil {
		return request{}, err
	}
	return request{redisKey: redisKey(l.opts.Prefix, key, limit.Algorithm), limit: limit, n: n}, nil
}
