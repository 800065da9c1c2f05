package tiered

// Degradation: a circuit breaker per Client guards every Redis call (see
// remote.Guard). While it is open, calls fail at once (no timeout per
// request), reads go to the Loader (fill.go's fillDegraded caches them
// briefly), and writes queue their invalidations for replay (replay.go).
// When it closes again, the local tiers flush and the queue is replayed.

import (
	"go.uber.org/zap"

	"github.com/tiercache/tiercache/internal/breaker"
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
