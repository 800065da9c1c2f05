package tiered

// Degradation: a circuit breaker per Client guards every Redis call (see
// remote.Guard). While it is open, calls fail at once (no timeout per
// request), reads go to the Loader (fill.go's fillDegraded caches them
// briefly), and writes queue their invalidations for replay (replay.go).
// When it closes again, the local tiers flush and the queue is replayed.
// An error that retrying cannot cure (an ACL refusal, a wrong password) is
// not retried: it is logged once, saying what the Redis user lacks, and
// reported by Client.Err.

import (
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/breaker"
	"github.com/tiercache/tiercache/remote"
)

func (c *Client) newBreaker() *breaker.Breaker {
	return breaker.New(breaker.Options{
		ConsecutiveFailures: c.options.BreakerFailures,
		OpenFor:             c.options.BreakerOpenFor,
		OnChange: func(from, to breaker.State) {
			switch to {
			case breaker.Open:
				c.log.Warn("Redis unavailable: circuit breaker open; reads go to the loaders", zap.Stringer("from", from))
			case breaker.Closed:
				c.log.Info("Redis available again: circuit breaker closed; flushing local tiers and replaying queued invalidations")
				c.recovered()
			}
		},
	})
}

// recovered runs when Redis is reachable again: local tiers may hold values
// loaded while invalidations could not flow, and queued invalidations must
// go out.
func (c *Client) recovered() {
	c.flushSpaces(true)
	c.startReplay()
}

// refused records an error Redis will keep returning for op ("publish",
// "subscribe"): the first of each kind is logged at Error with what to
// grant, and Err reports the last one.
func (c *Client) refused(op string, err error) {
	hint := remote.PermissionHint(err, c.options.Channel)
	if hint == "" {
		hint = "Redis refuses it; it is not retried"
	}
	perm := &PermanentError{Op: op, Hint: hint, Err: err}
	if prev := c.permanent.Swap(perm); prev == nil || prev.Op != op || prev.Hint != hint {
		c.log.Error("tiercache cannot "+op+": "+hint, zap.Error(err))
	}
}

// accepted clears a refusal of op once Redis accepted it again (the ACL
// was fixed).
func (c *Client) accepted(op string) {
	if p := c.permanent.Load(); p != nil && p.Op == op && c.permanent.CompareAndSwap(p, nil) {
		c.log.Info("tiercache can " + op + " again")
	}
}

// Err returns the last error Redis will keep returning (an ACL refusal to
// publish or subscribe, wrong credentials), or nil. A Client with such an
// error cannot keep peers coherent: its writes' invalidations are dropped
// (counted in ClientStats.InvalidationsDropped) and, when it cannot
// subscribe, its local tier is never served.
func (c *Client) Err() error {
	if p := c.permanent.Load(); p != nil {
		return p
	}
	return nil
}

// PermanentError is what Client.Err reports: an operation Redis refuses for
// good, and what to change.
type PermanentError struct {
	Op   string // "publish", "subscribe"
	Hint string // what the Redis user lacks, when that is the cause
	Err  error
}

func (e *PermanentError) Error() string {
	return fmt.Sprintf("tiercache: cannot %s: %s: %v", e.Op, e.Hint, e.Err)
}

// Unwrap returns Redis's error.
func (e *PermanentError) Unwrap() error { return e.Err }

// isPermanent reports whether err is one Redis will keep returning.
func isPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe) || remote.IsPermanent(err)
}
