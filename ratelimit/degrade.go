package ratelimit

import (
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/breaker"
)

// Degradation: a circuit breaker guards every Redis call (see call). After
// breakerFailures failed calls in a row (or half of at least 20 in 10s) it
// opens, and calls are decided at once, without the network, as
// Options.OnError says, until a probe call every breakerOpenFor finds Redis
// back. The opening and the closing are logged once each.

func (l *Limiter) newBreaker() *breaker.Breaker {
	return breaker.New(breaker.Options{
		ConsecutiveFailures: breakerFailures,
		OpenFor:             breakerOpenFor,
		OnChange: func(from, to breaker.State) {
			switch {
			case from == breaker.Closed && to == breaker.Open:
				l.log.Warn("Redis unavailable: circuit breaker open; rate limits are decided without Redis",
					zap.Stringer("on_error", l.opts.OnError))
			case to == breaker.Closed:
				l.log.Info("Redis available again: circuit breaker closed; rate limits are shared again")
			}
		},
	})
}

// degraded decides req without Redis.
func (l *Limiter) degraded(req request) Result {
	switch l.opts.OnError {
	case FailOpen:
		return Result{Allowed: true, Degraded: true}
	case FailClosed:
		return Result{RetryAfter: breakerOpenFor, Degraded: true}
	}
	res := l.local.take(req, l.local.now(), false)
	res.Degraded = true
	return res
}
