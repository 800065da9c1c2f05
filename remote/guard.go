package remote

import (
	"context"
	"errors"
	"strings"

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

// guard runs f under the store's Guard, if any.
func (s *Store) guard(f func() error) error {
	if s.g == nil {
		return f()
	}
	if !s.g.Allow() {
		return ErrUnavailable
	}
	err := f()
	s.g.Done(IsFailure(err))
	return err
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
		msg := re.Error()
		for _, p := range []string{"LOADING", "BUSY", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "TRYAGAIN"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return true
}
